package agent

import (
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/model"
)

// waitFor bounds waits on the agents; it guards against a hang and is no
// claim about speed.
const waitFor = 20 * time.Second

// counter reads one counter of an agent's registry; 0 when it has not
// counted yet.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// withBundleEndpoint rewrites the configuration m.config wrote, so that
// td's bundle comes from the endpoint block instead of a file.
func withBundleEndpoint(t *testing.T, m mesh, td, block string) *config.Config {
	t.Helper()
	path := filepath.Join(m.dir, "meshfed.yaml")
	y, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(string(y), "\n")
	n := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "  "+td+": {file: ") {
			lines[i] = "  " + td + ":\n    endpoint: " + block
			n++
		}
	}
	require.Equal(t, 1, n, "the trustBundles line of %s", td)
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)
	return c
}

func bundleState(a *Agent, td string) certs.BundleState {
	for _, s := range a.creds.bundles.States() {
		if s.TrustDomain == td {
			return s
		}
	}
	return certs.BundleState{}
}

// connected waits until b has imported a's inventory over a Hamlet stream.
func connected(t *testing.T, b *Agent) {
	t.Helper()
	require.Eventually(t, func() bool {
		st := b.Peers.Status()
		return len(st) == 1 && st[0].State == peer.Connected && len(b.Catalog.Imports()) == 1
	}, waitFor, 10*time.Millisecond, "mesh-b never imported over a connected stream")
}

// mesh-b starts with nothing of mesh-a's but the bootstrap bundle, fetches
// mesh-a's bundle from mesh-a's own https_spiffe endpoint, connects, and
// follows a rotation at the endpoint's refresh hint; with mesh-a down it
// keeps the last good bundle.
func TestPeerBundleFromHTTPSSPIFFEEndpoint(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a := start(t, ma.config(t, mb, "", "bundleEndpoint: {listen: 127.0.0.1:0, refreshHint: 1s}\n"))
	a.Catalog.SetExports([]model.Export{inventory()})
	aBundle := filepath.Join(ma.dir, "certs", "bundle.pem")
	pem, err := os.ReadFile(aBundle)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(mb.dir, "mesh-a-bootstrap.pem"), pem, 0o644)) // given once, out of band

	mb.config(t, ma, a.FederationAddr().String())
	cb := withBundleEndpoint(t, mb, "mesh-a.example", fmt.Sprintf(
		"{url: 'https://%s/', profile: https_spiffe, spiffeId: spiffe://mesh-a.example/meshfed/agent, bootstrapBundle: mesh-a-bootstrap.pem}",
		a.BundleEndpointAddr()))
	b := start(t, cb)
	connected(t, b.Agent)
	require.Eventually(t, func() bool { return bundleState(b.Agent, "mesh-a.example").Origin == certs.OriginEndpoint }, waitFor, 10*time.Millisecond)
	require.FileExists(t, cb.SavedBundlePath("mesh-a.example"))

	// mesh-a adds a second CA to its bundle. mesh-b's own refresh default
	// is 5 minutes: only the 1s hint brings it in.
	next, err := certs.NewTestCA(spiffeid.RequireTrustDomainFromString("mesh-a.example"))
	require.NoError(t, err)
	writeAtomic(t, aBundle, append(pem, next.CertPEM()...))
	require.Eventually(t, func() bool { return bundleState(b.Agent, "mesh-a.example").Authorities == 2 }, waitFor, 10*time.Millisecond)
	served := counter(t, a.reg, "meshfed_certs_bundle_endpoint_requests_total", map[string]string{"code": "200"})
	require.GreaterOrEqual(t, served, 2.0)
	got, err := b.creds.bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("mesh-a.example"))
	require.NoError(t, err)
	require.True(t, got.HasX509Authority(next.Certificate()))

	// mesh-a goes away: fetches fail, the last good bundle stays.
	a.stop()
	failures := map[string]string{"trust_domain": "mesh-a.example", "result": "failure"}
	require.Eventually(t, func() bool {
		return counter(t, b.reg, "meshfed_certs_bundle_fetches_total", failures) >= 1
	}, waitFor, 10*time.Millisecond)
	st := bundleState(b.Agent, "mesh-a.example")
	require.Equal(t, certs.OriginEndpoint, st.Origin)
	require.Equal(t, 2, st.Authorities)
	require.Contains(t, st.LastError, "connection refused")
	require.Empty(t, b.creds.bundles.Missing())
}

// webEndpoint starts mesh-a with its bundle served with https_web and a
// certificate from a test CA, and returns it with that CA's file.
func webEndpoint(t *testing.T, root string, ma, mb mesh) (*running, string) {
	t.Helper()
	webDir := filepath.Join(root, "web")
	require.NoError(t, certs.InitDevCA(certs.DevCAOptions{Dir: webDir, TrustDomain: spiffeid.RequireTrustDomainFromString("web.example")}))
	webCA, err := certs.LoadCA(webDir)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	chain, key, err := webCA.IssueTemplate(tmpl)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(webDir, "web.pem"), chain, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(webDir, "web-key.pem"), key, 0o600))

	a := start(t, ma.config(t, mb, "", fmt.Sprintf("bundleEndpoint: {listen: 127.0.0.1:0, profile: https_web, webCertificate: {cert: %s, key: %s}}\n",
		filepath.Join(webDir, "web.pem"), filepath.Join(webDir, "web-key.pem"))))
	a.Catalog.SetExports([]model.Export{inventory()})
	return a, filepath.Join(webDir, certs.CACertFile)
}

// mesh-a serves its bundle with https_web and a certificate from a test
// CA; mesh-b verifies it with that CA as caFile and connects.
func TestPeerBundleFromHTTPSWebEndpoint(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a, caFile := webEndpoint(t, root, ma, mb)
	mb.config(t, ma, a.FederationAddr().String())
	b := start(t, withBundleEndpoint(t, mb, "mesh-a.example", fmt.Sprintf("{url: 'https://%s/bundle', profile: https_web, caFile: %s}",
		a.BundleEndpointAddr(), caFile)))

	connected(t, b.Agent)
	st := bundleState(b.Agent, "mesh-a.example")
	require.Equal(t, certs.OriginEndpoint, st.Origin)
	require.Equal(t, 1, st.Authorities)
	require.Zero(t, counter(t, a.reg, "meshfed_certs_bundle_endpoint_refused_handshakes_total", nil))
}

// gatedProxy forwards TCP connections to target while open; a connection
// made while it is shut waits for it to open: a bundle endpoint that
// answers late.
type gatedProxy struct {
	addr   string
	mu     sync.Mutex
	opened chan struct{}
}

func newGatedProxy(t *testing.T, target string) *gatedProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &gatedProxy{addr: l.Addr().String(), opened: make(chan struct{})}
	t.Cleanup(func() { _ = l.Close(); p.open() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			opened := p.opened
			p.mu.Unlock()
			go func() {
				defer c.Close()
				<-opened
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return p
}

func (p *gatedProxy) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.opened:
	default:
		close(p.opened)
	}
}

func (p *gatedProxy) shut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.opened:
		p.opened = make(chan struct{})
	default:
	}
}

// lateBundle starts mesh-b with mesh-a's bundle from an https_web
// endpoint that answers once release is called (at the latest when the
// test ends).
func lateBundle(t *testing.T, opts ...func(*Agent)) (b *running, release func()) {
	t.Helper()
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a, caFile := webEndpoint(t, root, ma, mb)
	late := newGatedProxy(t, a.BundleEndpointAddr().String())
	mb.config(t, ma, a.FederationAddr().String())
	block := fmt.Sprintf("{url: 'https://%s/bundle', profile: https_web, caFile: %s}", late.addr, caFile)
	return start(t, withBundleEndpoint(t, mb, "mesh-a.example", block), opts...), late.open
}

// A peer bundle that has never loaded holds the gateways' first
// configuration back, so that a gateway keeps what it has rather than
// losing the peer's restored imports; the agent says which peer it waits
// for, and configures the gateways as soon as the bundle arrives.
func TestFirstConfigurationWaitsForPeerBundle(t *testing.T) {
	b, release := lateBundle(t)

	require.EqualError(t, b.Ready(), "starting: waiting for the trust bundles of mesh-a (mesh-a.example)")
	require.False(t, b.Cache.Ready(model.Egress), "no gateway is configured yet")

	release()
	require.Eventually(t, func() bool { return b.Ready() == nil }, waitFor, 10*time.Millisecond)
	require.True(t, b.Cache.Ready(model.Egress))
	connected(t, b.Agent)
}

// Past the wait, the gateways are configured with what the agent has.
// A consumer restarted while its peer's bundle endpoint answers late (and
// no bundle was saved) serves its gateways nothing until the bundle is in,
// and then the imports restored from its store at once: the egress
// gateway is never given a configuration without the restored cluster.
func TestRestartedConsumerKeepsRestoredImports(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a, caFile := webEndpoint(t, root, ma, mb)
	late := newGatedProxy(t, a.BundleEndpointAddr().String())
	late.open()
	mb.config(t, ma, a.FederationAddr().String())
	cfg := withBundleEndpoint(t, mb, "mesh-a.example", fmt.Sprintf("{url: 'https://%s/bundle', profile: https_web, caFile: %s}", late.addr, caFile))
	b := start(t, cfg)
	connected(t, b.Agent)
	const scope = "egress/mesh-a/inventory/http"
	require.Eventually(t, func() bool {
		return slices.Contains(importScopes(b.Agent), scope)
	}, waitFor, 10*time.Millisecond)
	b.stop()

	late.shut()
	require.NoError(t, os.Remove(cfg.SavedBundlePath("mesh-a.example")))
	b = start(t, cfg)
	require.EqualError(t, b.Ready(), "starting: waiting for the trust bundles of mesh-a (mesh-a.example)")
	require.False(t, b.Cache.Ready(model.Egress))
	late.open()
	require.Eventually(t, func() bool { return b.Cache.Ready(model.Egress) }, waitFor, time.Millisecond)
	require.Contains(t, importScopes(b.Agent), scope, "the first configuration holds the restored import")
}

// Past the bundle wait, a peer's bundle that still has not loaded (its
// endpoint down, no bundle saved) does not take the restored import away:
// the gateways are served the bundle they last had, the status says which
// imports are held and why, and once the endpoint answers the bundle it
// serves takes over.
func TestHeldBundleKeepsRestoredImportsPastTheWait(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a, caFile := webEndpoint(t, root, ma, mb)
	late := newGatedProxy(t, a.BundleEndpointAddr().String())
	late.open()
	mb.config(t, ma, a.FederationAddr().String())
	cfg := withBundleEndpoint(t, mb, "mesh-a.example", fmt.Sprintf("{url: 'https://%s/bundle', profile: https_web, caFile: %s}", late.addr, caFile))
	b := start(t, cfg)
	connected(t, b.Agent)
	const scope = "egress/mesh-a/inventory/http"
	const secret = "meshfed/bundle/mesh-a_2eexample"
	require.Eventually(t, func() bool {
		return slices.Contains(importScopes(b.Agent), scope)
	}, waitFor, 10*time.Millisecond)
	served := secretVersion(b.Agent, secret)
	require.NotEmpty(t, served)
	b.stop()

	late.shut()
	require.NoError(t, os.Remove(cfg.SavedBundlePath("mesh-a.example")))
	b = start(t, cfg, func(a *Agent) { a.BundleWait = 100 * time.Millisecond })
	require.Eventually(t, func() bool { return b.Ready() == nil }, waitFor, 10*time.Millisecond)
	require.Contains(t, importScopes(b.Agent), scope, "the restored import is served past the wait")
	require.Equal(t, served, secretVersion(b.Agent, secret), "with the bundle the gateways had")
	require.Equal(t, []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("mesh-a.example")}, b.creds.bundles.Missing(), "the agent itself does not take it")
	holds := b.bundleHolds()
	require.Len(t, holds, 1)
	require.True(t, holds[0].Held)
	require.Equal(t, []string{"mesh-a/inventory"}, holds[0].Imports)
	require.Equal(t, []string{"mesh-a"}, holds[0].Peers)
	require.Contains(t, holds[0].Reason, "the trust bundle of mesh-a.example has not loaded from endpoint https://"+late.addr+"/bundle")
	require.Contains(t, holds[0].Reason, "the gateways keep the bundle they were last served")
	require.Contains(t, strings.Join(b.Degraded(), "\n"), "trust bundle mesh-a.example: peers mesh-a (1 imports held: mesh-a/inventory): ")

	late.open()
	require.Eventually(t, func() bool { return len(b.bundleHolds()) == 0 }, waitFor, 10*time.Millisecond)
	require.Equal(t, certs.OriginEndpoint, bundleState(b.Agent, "mesh-a.example").Origin)
	require.Contains(t, importScopes(b.Agent), scope)
	connected(t, b.Agent)
}

// secretVersion is the version of a secret the egress gateway is served.
func secretVersion(a *Agent, name string) string {
	for _, r := range a.Cache.Resources(model.Egress, resource.SecretType) {
		if r.Name == name {
			return r.Version
		}
	}
	return ""
}

// importScopes are the egress routing scopes a serves: one per HTTP
// import instance.
func importScopes(a *Agent) []string {
	var out []string
	for _, r := range a.Cache.Resources(model.Egress, resource.ScopedRouteType) {
		out = append(out, r.Name)
	}
	return out
}

func TestFirstConfigurationStopsWaiting(t *testing.T) {
	b, _ := lateBundle(t, func(a *Agent) { a.BundleWait = 100 * time.Millisecond })

	require.Eventually(t, func() bool { return b.Ready() == nil }, waitFor, 10*time.Millisecond)
	require.True(t, b.Cache.Ready(model.Egress))
	require.Equal(t, []string{"mesh-a (mesh-a.example)"}, b.missingPeers())
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o644))
	require.NoError(t, os.Rename(tmp, path))
}
