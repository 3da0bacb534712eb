package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/envoyrun"
	"github.com/meshfed/meshfed/envoyrun/envoytest"
	"github.com/meshfed/meshfed/examples/twomesh"
)

// The ports every exported service has, the same in both meshes.
const (
	httpPort  = twomesh.HTTPPort
	grpcPort  = twomesh.GRPCPort
	tcpPort   = twomesh.TCPPort
	httpsPort = twomesh.HTTPSPort
)

// mesh is one federated mesh of a test: its files (twomesh), its agent
// (in this process), its two Envoy gateways and the upstream servers of
// the service it exports.
type mesh struct {
	*twomesh.Mesh
	t    *testing.T
	sotw bool

	agent     *agent.Agent
	stopAgent func()
	egress    *envoyrun.Envoy
	ingress   *envoyrun.Envoy
	up        upstreams
	peer      *mesh
	// bundleWait, when set, is the agent's BundleWait.
	bundleWait time.Duration
}

type upstreams struct {
	http, grpc, tcp *upstream.Server
	// With options.tlsFamily: servers that speak TLS themselves, with an
	// SVID of their mesh (mtls requires one of a caller's mesh).
	tls, mtls *upstream.TLSServer
	https     *upstream.Server
}

// options change how a federation is set up.
type options struct {
	// sotw runs the gateways with state-of-the-world ADS instead of delta.
	sotw bool
	// otherPeers are further meshes that both agents know as peers, but to
	// which nothing is exported and which never connect.
	otherPeers []string
	// tlsFamily adds TLS, MTLS and HTTPS ports to the exported services.
	tlsFamily bool
	// httpRouteTimeout and streamIdleTimeout are those of
	// gateways.egress of both meshes.
	httpRouteTimeout, streamIdleTimeout string
	// allowedSources is gateways.egress.allowedSources of both meshes.
	allowedSources []string
	// xdsTLS serves the gateways over TCP with mutual TLS instead of a
	// Unix socket, and gives them prometheus listeners.
	xdsTLS bool
	// maxBackoff is federation.maxBackoff of both meshes.
	maxBackoff string
	// prepare runs on each mesh before its files are written, with its
	// peer known: to start more upstreams and export more services.
	prepare func(*mesh)
}

// federate sets up mesh-a and mesh-b, federated (mesh-b dials mesh-a), each
// exporting its service to the other, with their gateways running and
// serving the peer's service. At the end of the test every Envoy must have
// rejected no update and hold what its agent served it.
func federate(t *testing.T, opts options) (a, b *mesh) {
	t.Helper()
	bin := envoytest.Binary(t)
	root := t.TempDir()
	for _, name := range append([]string{"mesh-a", "mesh-b"}, opts.otherPeers...) {
		require.NoError(t, twomesh.WriteCA(root, name))
	}
	ipA, ipB := loopbackPair()
	a = newMesh(t, root, "mesh-a", "inventory", ipA, opts)
	b = newMesh(t, root, "mesh-b", "payments", ipB, opts)
	a.peer, b.peer = b, a
	a.Peer, b.Peer = b.Mesh, a.Mesh
	if opts.tlsFamily {
		a.startTLSUpstreams()
		b.startTLSUpstreams()
	}
	if opts.prepare != nil {
		opts.prepare(a)
		opts.prepare(b)
	}
	for _, m := range []*mesh{a, b} {
		m.writeServices(true)
		require.NoError(t, m.WriteConfig())
	}
	a.startAgent()
	b.startAgent()
	for _, m := range []*mesh{a, b} {
		m.startGateways(bin)
	}
	// Registered last, so it runs first: before anything is stopped.
	t.Cleanup(func() {
		for _, m := range []*mesh{a, b} {
			m.checkGateways()
		}
	})
	for _, m := range []*mesh{a, b} {
		m.waitImported()
	}
	return a, b
}

func newMesh(t *testing.T, root, name, service, ip string, opts options) *mesh {
	t.Helper()
	free := &freePorts{t: t, ip: ip}
	defer free.release()
	m := &mesh{t: t, sotw: opts.sotw, Mesh: &twomesh.Mesh{
		Name: name, Service: service, Dir: filepath.Join(root, name), IP: ip, OtherPeers: opts.otherPeers, Holdoff: "1ms",
		HTTPRouteTimeout: opts.httpRouteTimeout, StreamIdleTimeout: opts.streamIdleTimeout, AllowedSources: opts.allowedSources,
		MaxBackoff: opts.maxBackoff,
		// Every port is picked free on the mesh's own loopback address,
		// where nothing else binds: a port picked on 127.0.0.1 could be
		// taken by another process's ephemeral port before the agent
		// binds it.
		Federation: free.addr(), XDS: "unix://" + filepath.Join(root, name, "xds.sock"), Admin: free.addr(), DNS: free.addr(),
		IngressPort: free.port(),
	}}
	// Nothing else binds the mesh's address, and ephemeral ports are above
	// this range.
	m.PortsFrom, m.PortsTo = 21000, 21009
	if opts.xdsTLS {
		m.XDS, m.XDSTLS = free.addr(), true
		m.GatewayAdmin = map[string]string{"egress": free.addr(), "ingress": free.addr()}
		m.GatewayStats = map[string]string{"egress": free.addr(), "ingress": free.addr()}
	}
	var err error
	m.up.http, err = upstream.HTTP(service+"-http", "")
	require.NoError(t, err)
	m.up.grpc, err = upstream.GRPC(service+"-grpc", "")
	require.NoError(t, err)
	m.up.tcp, err = upstream.TCPEcho(service+"-tcp", "")
	require.NoError(t, err)
	m.Upstreams.HTTP, m.Upstreams.GRPC, m.Upstreams.TCP = m.up.http.Port(), m.up.grpc.Port(), m.up.tcp.Port()
	t.Cleanup(func() {
		for _, s := range []*upstream.Server{m.up.http, m.up.grpc, m.up.tcp} {
			require.NoError(t, s.Close())
		}
	})
	return m
}

func (m *mesh) writeServices(exported bool) {
	m.t.Helper()
	require.NoError(m.t, m.WriteServices(exported))
}

// startAgent starts the mesh's agent from its configuration and store, and
// returns once it listens.
func (m *mesh) startAgent() {
	t := m.t
	t.Helper()
	cfg, err := config.Load(m.ConfigPath())
	require.NoError(t, err)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(m.Name)
	a, err := agent.New(context.Background(), cfg, log, prometheus.NewRegistry())
	require.NoError(t, err)
	a.ConfigPath = m.ConfigPath()
	a.BundleWait = m.bundleWait
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Listening():
	case err := <-done:
		t.Fatalf("%s agent stopped at start: %v", m.Name, err)
	}
	m.agent = a
	stopped := false
	m.stopAgent = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(m.stopAgent)
}

// restartAgent stops the agent and starts it again on the same store.
func (m *mesh) restartAgent() {
	m.stopAgent()
	m.startAgent()
}

func (m *mesh) startGateways(bin string) {
	m.egress = m.startEnvoy(bin, "egress")
	m.ingress = m.startEnvoy(bin, "ingress")
}

func (m *mesh) startEnvoy(bin, role string) *envoyrun.Envoy {
	t := m.t
	t.Helper()
	boot, err := m.Bootstrap(role, m.sotw)
	require.NoError(t, err)
	return envoytest.Start(t, envoyrun.Config{Binary: bin, Name: m.Name + "-" + role, Dir: m.Dir, Bootstrap: boot})
}

// waitImported waits until the egress gateway is initialized with the
// peer's service and the ingress with the mesh's own.
func (m *mesh) waitImported() {
	m.t.Helper()
	eventually(m.t, m.Name+" gateways ready and in sync", func(ctx context.Context) error {
		for _, e := range []*envoyrun.Envoy{m.egress, m.ingress} {
			if err := e.Ready(ctx); err != nil {
				return err
			}
		}
		if n := len(m.agent.Catalog.Imports()); n == 0 {
			return fmt.Errorf("no import yet")
		}
		return m.inSync(ctx)
	})
}

// inSync checks both gateways against what the agent serves them.
func (m *mesh) inSync(ctx context.Context) error {
	if err := configMatches(ctx, m.egress, m.agent.Cache, egressRole, m.sotw); err != nil {
		return err
	}
	return configMatches(ctx, m.ingress, m.agent.Cache, ingressRole, m.sotw)
}

// checkGateways is what every test ends with: no gateway rejected an
// update or timed out waiting for one, and each holds what the agent
// serves it.
func (m *mesh) checkGateways() {
	t := m.t
	t.Helper()
	if m.egress == nil || m.ingress == nil || m.agent == nil {
		t.Errorf("%s: nothing to check: a gateway or the agent was never started", m.Name)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// An update Envoy waited for until its initial_fetch_timeout (a
	// cluster warming without its endpoints) counts as one it did not get.
	for _, e := range []*envoyrun.Envoy{m.egress, m.ingress} {
		stats, err := e.Stats(ctx, "update_rejected|init_fetch_timeout")
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		// Every xDS subscription has both counters: a filter that matched
		// none of them would check nothing.
		for _, counter := range []string{"cds.update_rejected", "lds.update_rejected", "cds.init_fetch_timeout", "lds.init_fetch_timeout"} {
			if !slices.ContainsFunc(slices.Collect(maps.Keys(stats)), func(n string) bool { return strings.HasSuffix(n, counter) }) {
				t.Errorf("envoy %s: no %s counter among %v", e.Name(), counter, slices.Sorted(maps.Keys(stats)))
			}
		}
		for name, v := range stats {
			if v != 0 {
				t.Errorf("envoy %s: %s = %d", e.Name(), name, v)
			}
		}
	}
	// At thousands of services one gateway's dump takes seconds to fetch,
	// decode and compare under -race (7 s for 2,000 imports on an idle
	// machine): a try of 5 s would never end.
	eventuallyTrying(t, m.Name+" gateways hold what the agent serves", 60*time.Second, m.inSync)
}

// loopbackPair returns two loopback addresses of their own for the gateways
// of a federation. Envoy binds its listeners with SO_REUSEPORT, so two
// gateways of the same user on one address and port share its connections
// without an error: federations running at the same time (another test
// package, another checkout) must not meet on an address.
func loopbackPair() (string, string) {
	n := rand.N(1 << 14)
	addr := func(i int) string { return fmt.Sprintf("127.%d.%d.%d", 64+i>>8, i&0xff, 1) }
	return addr(2 * n % (64 << 8)), addr((2*n + 1) % (64 << 8))
}

// freePorts picks distinct TCP ports free on ip. Each stays bound until
// release: a port closed at once may be the kernel's next pick, and two
// gateways' admin and stats listeners would then meet on one port.
type freePorts struct {
	t    *testing.T
	ip   string
	held []net.Listener
}

func (f *freePorts) port() uint32 {
	f.t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(f.ip, "0"))
	require.NoError(f.t, err)
	f.held = append(f.held, l)
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

func (f *freePorts) addr() string {
	return net.JoinHostPort(f.ip, strconv.FormatUint(uint64(f.port()), 10))
}

func (f *freePorts) release() {
	for _, l := range f.held {
		require.NoError(f.t, l.Close())
	}
}

// eventually retries check until it passes, failing the test with the last
// error after a generous deadline: a loaded machine is slow, and only a
// broken system reaches it.
func eventually(t *testing.T, what string, check func(ctx context.Context) error) {
	t.Helper()
	eventuallyTrying(t, what, 5*time.Second, check)
}

// eventuallyTrying is eventually with tries of up to perTry each.
func eventuallyTrying(t *testing.T, what string, perTry time.Duration, check func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), perTry)
		err = check(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 30s: %v", what, strings.TrimSpace(err.Error()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
