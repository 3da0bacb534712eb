package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/e2e/upstream"
	envoyconfigs "github.com/meshfed/meshfed/envoy-configs"
	"github.com/meshfed/meshfed/envoyrun"
	"github.com/meshfed/meshfed/envoyrun/envoytest"
)

// The ports every exported service has, the same in both meshes: the
// service's own ports, which the egress gateway serves imports on.
const (
	httpPort = 8080
	grpcPort = 9090
	tcpPort  = 7000
)

// mesh is one federated mesh of a test: its agent (in this process), its
// two Envoy gateways and the upstream servers of the service it exports.
type mesh struct {
	t        *testing.T
	name, td string
	// service is the name of the service the mesh exports.
	service string
	dir     string
	// ip is the loopback address the mesh's gateways listen on; each mesh
	// has its own, as on separate hosts.
	ip                   string
	fed, xds, admin, dns string
	ingressPort          uint32
	portsFrom, portsTo   uint32
	sotw                 bool
	otherPeers           []string

	agent     *agent.Agent
	stopAgent func()
	egress    *envoyrun.Envoy
	ingress   *envoyrun.Envoy
	up        upstreams
	peer      *mesh
}

type upstreams struct {
	http, grpc, tcp *upstream.Server
}

// options change how a federation is set up.
type options struct {
	// sotw runs the gateways with state-of-the-world ADS instead of delta.
	sotw bool
	// otherPeers are further meshes (trust domains <name>.example, each
	// with a CA under the test's folder) that both agents know as peers,
	// but to which nothing is exported and which never connect.
	otherPeers []string
}

// federate sets up mesh-a and mesh-b, federated (mesh-b dials mesh-a), each
// exporting its service to the other, with their gateways running and
// serving the peer's service. At the end of the test every Envoy must have
// rejected no update and hold what its agent served it.
func federate(t *testing.T, opts options) (a, b *mesh) {
	t.Helper()
	bin := envoytest.Binary(t)
	root := t.TempDir()
	for _, name := range opts.otherPeers {
		newCA(t, root, name)
	}
	a = newMesh(t, root, "mesh-a", "inventory", "127.0.10.1", opts)
	b = newMesh(t, root, "mesh-b", "payments", "127.0.20.1", opts)
	a.peer, b.peer = b, a
	for _, m := range []*mesh{a, b} {
		m.writeServices(true)
		m.writeConfig()
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
	m := &mesh{t: t, name: name, td: name + ".example", service: service, dir: filepath.Join(root, name), ip: ip,
		sotw: opts.sotw, otherPeers: opts.otherPeers}
	newCA(t, root, name)
	m.fed, m.xds, m.admin, m.dns = freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	m.ingressPort = freePort(t, ip)
	m.portsFrom = freePort(t, ip)
	m.portsTo = m.portsFrom
	var err error
	m.up.http, err = upstream.HTTP(service+"-http", "")
	require.NoError(t, err)
	m.up.grpc, err = upstream.GRPC(service+"-grpc", "")
	require.NoError(t, err)
	m.up.tcp, err = upstream.TCPEcho(service+"-tcp", "")
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, s := range []*upstream.Server{m.up.http, m.up.grpc, m.up.tcp} {
			require.NoError(t, s.Close())
		}
	})
	return m
}

// fqdn is the name of the service the mesh exports.
func (m *mesh) fqdn() string { return m.service + "." + m.td }

// writeServices writes the registry file of the mesh's exports: its service
// exported to its peer, or nothing (the service withdrawn).
func (m *mesh) writeServices(exported bool) {
	if !exported {
		writeAtomic(m.t, filepath.Join(m.dir, "services.yaml"), "services: []\n")
		return
	}
	y := fmt.Sprintf(`services:
  - name: %[1]s
    fqdn: %[2]s
    consumers: [%[3]s]
    ports:
      - {name: http, port: %[4]d, protocol: HTTP, endpoints: [{address: 127.0.0.1, port: %[5]d}]}
      - {name: grpc, port: %[6]d, protocol: GRPC, endpoints: [{address: 127.0.0.1, port: %[7]d}]}
      - {name: tcp, port: %[8]d, protocol: TCP, endpoints: [{address: 127.0.0.1, port: %[9]d}]}
`, m.service, m.fqdn(), m.peer.name, httpPort, m.up.http.Port(), grpcPort, m.up.grpc.Port(), tcpPort, m.up.tcp.Port())
	writeAtomic(m.t, filepath.Join(m.dir, "services.yaml"), y)
}

// newCA writes a development CA and its SVIDs for mesh name under root.
func newCA(t *testing.T, root, name string) {
	t.Helper()
	dir := filepath.Join(root, name, "certs")
	require.NoError(t, certs.InitDevCA(certs.DevCAOptions{Dir: dir, TrustDomain: spiffeid.RequireTrustDomainFromString(name + ".example")}))
}

func (m *mesh) writeConfig() {
	dial := ""
	if m.name == "mesh-b" {
		dial = m.peer.fed
	}
	var bundles, peers strings.Builder
	for _, o := range m.otherPeers {
		fmt.Fprintf(&bundles, "  %[1]s.example: {file: ../%[1]s/certs/bundle.pem}\n", o)
		fmt.Fprintf(&peers, "  - {name: %[1]s, trustDomain: %[1]s.example, spiffeIds: [spiffe://%[1]s.example/meshfed/agent]}\n", o)
	}
	y := fmt.Sprintf(`trustDomain: %[1]s
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  %[1]s: {file: certs/bundle.pem}
  %[2]s: {file: ../%[3]s/certs/bundle.pem}
%[13]sfederation:
  listen: %[4]s
  ingress: [{address: %[5]s, port: %[6]d}]
peers:
  - name: %[3]s
    trustDomain: %[2]s
    spiffeIds: [spiffe://%[2]s/meshfed/agent]
    dial: "%[7]s"
    allowLoopback: true
%[14]sxds:
  listen: %[8]s
  holdoff: 1ms
admin:
  listen: %[9]s
dns:
  listen: %[10]s
gateways:
  egress:
    listen: {address: %[5]s}
    ports: {from: %[11]d, to: %[12]d}
  ingress:
    listen: {address: %[5]s, port: %[6]d}
exports:
  file: services.yaml
`, m.td, m.peer.td, m.peer.name, m.fed, m.ip, m.ingressPort, dial, m.xds, m.admin, m.dns,
		m.portsFrom, m.portsTo, bundles.String(), peers.String())
	writeAtomic(m.t, filepath.Join(m.dir, "meshfed.yaml"), y)
}

// startAgent starts the mesh's agent from its configuration and store, and
// returns once it listens.
func (m *mesh) startAgent() {
	t := m.t
	t.Helper()
	cfg, err := config.Load(filepath.Join(m.dir, "meshfed.yaml"))
	require.NoError(t, err)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(m.name)
	a, err := agent.New(context.Background(), cfg, log, prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Listening():
	case err := <-done:
		t.Fatalf("%s agent stopped at start: %v", m.name, err)
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
	b, err := envoyconfigs.Load(role + ".yaml")
	require.NoError(t, err)
	require.NoError(t, envoyconfigs.Apply(b, envoyconfigs.Params{Admin: "127.0.0.1:0", XDS: m.xds, SotW: m.sotw}))
	// The tests poll the admin interface; its access log would bury
	// Envoy's own messages.
	b.GetAdmin().AccessLog = nil
	boot, err := envoyconfigs.Marshal(b)
	require.NoError(t, err)
	return envoytest.Start(t, envoyrun.Config{Binary: bin, Name: m.name + "-" + role, Dir: m.dir, Bootstrap: boot})
}

// waitImported waits until the egress gateway is initialized with the
// peer's service and the ingress with the mesh's own.
func (m *mesh) waitImported() {
	m.t.Helper()
	eventually(m.t, m.name+" gateways ready and in sync", func(ctx context.Context) error {
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
// update, and each holds what the agent serves it.
func (m *mesh) checkGateways() {
	t := m.t
	t.Helper()
	if m.egress == nil || m.ingress == nil || m.agent == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, e := range []*envoyrun.Envoy{m.egress, m.ingress} {
		stats, err := e.Stats(ctx, "update_rejected")
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for name, v := range stats {
			if v != 0 {
				t.Errorf("envoy %s: %s = %d", e.Name(), name, v)
			}
		}
	}
	eventually(t, m.name+" gateways hold what the agent serves", m.inSync)
}

// freePort returns a TCP port free on ip at the time of the call.
func freePort(t *testing.T, ip string) uint32 {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	require.NoError(t, err)
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

func freeAddr(t *testing.T, ip string) string {
	return net.JoinHostPort(ip, strconv.FormatUint(uint64(freePort(t, ip)), 10))
}

// writeAtomic replaces a file by a rename, as editors and ConfigMaps do, so
// that a watcher never reads half of it.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// eventually retries check until it passes, failing the test with the last
// error after a generous deadline: a loaded machine is slow, and only a
// broken system reaches it.
func eventually(t *testing.T, what string, check func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
