package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/google/go-cmp/cmp"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/xds"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// mesh is one agent's files: dev CA, configuration and store.
type mesh struct {
	name, td, dir string
}

func newMesh(t *testing.T, root, name string) mesh {
	t.Helper()
	m := mesh{name: name, td: name + ".example", dir: filepath.Join(root, name)}
	require.NoError(t, certs.InitDevCA(certs.DevCAOptions{Dir: filepath.Join(m.dir, "certs"), TrustDomain: spiffeid.RequireTrustDomainFromString(m.td)}))
	return m
}

// config writes m's configuration federating with other; dial is other's
// federation address, or empty when other dials m.
func (m mesh) config(t *testing.T, other mesh, dial string, extra ...string) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`trustDomain: %[1]s
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  %[1]s: {file: certs/bundle.pem}
  %[2]s: {file: %[3]s}
federation:
  listen: 127.0.0.1:0
  ingress: [{address: 127.0.0.1, port: 15444}]
peers:
  - name: %[4]s
    trustDomain: %[2]s
    spiffeIds: [spiffe://%[2]s/meshfed/agent]
    dial: "%[5]s"
    allowLoopback: true
xds:
  listen: unix://xds.sock
  holdoff: 1ms
admin:
  listen: 127.0.0.1:0
dns:
  listen: 127.0.0.1:0
`, m.td, other.td, filepath.Join(other.dir, "certs", "bundle.pem"), other.name, dial) + strings.Join(extra, "")
	path := filepath.Join(m.dir, "meshfed.yaml")
	require.NoError(t, os.WriteFile(path, []byte(y), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)
	return c
}

type running struct {
	*Agent
	stop func()
}

func start(t *testing.T, c *config.Config, opts ...func(*Agent)) *running {
	t.Helper()
	a, err := New(context.Background(), c, zaptest.NewLogger(t).Named(c.TrustDomain), prometheus.NewRegistry())
	require.NoError(t, err)
	for _, o := range opts {
		o(a)
	}
	return &running{Agent: a, stop: servetest.Start(t, a.Listening(), a.Run)}
}

func orders() model.Export { return export("orders") }

func inventory() model.Export { return export("inventory") }

// export is a service as a registry exports it: with the default SNI of
// each port.
func export(name string) model.Export {
	e := model.Export{
		Name: name, FQDN: name + ".mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b"},
		Ports: []model.ExportPort{
			{Name: "http", Port: 8080, Protocol: model.HTTP, Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: 9080}}},
			{Name: "db", Port: 5432, Protocol: model.TCP, Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: 9432}}},
		},
	}
	for i := range e.Ports {
		e.Ports[i].SNI = model.DefaultSNI(e.Ports[i].Port, e.FQDN)
	}
	return e
}

// gateway connects an ADS client to an agent and follows it.
type gateway struct {
	client  *adsclient.Client
	updates chan adsclient.Update
	// view is the state made of the updates read so far: unlike the
	// client's state it never runs ahead of what the test has seen.
	view map[string]map[string]*anypb.Any
}

func connect(t *testing.T, a *Agent, opts adsclient.Options) *gateway {
	t.Helper()
	conn, err := grpc.NewClient(xds.Target(a.XDSAddr()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	g := &gateway{client: adsclient.New(opts), updates: make(chan adsclient.Update, 100), view: map[string]map[string]*anypb.Any{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.client.Run(ctx, conn, g.updates)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return g
}

// until reads updates until cond holds on the view.
func (g *gateway) until(t *testing.T, what string, cond func(map[string]map[string]*anypb.Any) bool) []adsclient.Update {
	t.Helper()
	var seen []adsclient.Update
	deadline := time.After(20 * time.Second)
	for !cond(g.view) {
		select {
		case u := <-g.updates:
			seen = append(seen, u)
			g.apply(u)
		case <-deadline:
			t.Fatalf("gateway never had %s; state: %v", what, names(g.view))
		}
	}
	return seen
}

func (g *gateway) apply(u adsclient.Update) {
	if u.Rejected != nil {
		return
	}
	m := g.view[u.TypeURL]
	if m == nil || !g.client.Delta() {
		m = map[string]*anypb.Any{}
		g.view[u.TypeURL] = m
	}
	for i, n := range u.Updated {
		m[n] = u.Resources[i]
	}
	for _, n := range u.Removed {
		delete(m, n)
	}
}

func names(state map[string]map[string]*anypb.Any) map[string][]string {
	out := map[string][]string{}
	for typ, m := range state {
		for n := range m {
			out[typ] = append(out[typ], n)
		}
	}
	return out
}

// inSync holds when the gateway has exactly what the agent serves its role.
func inSync(a *Agent, role model.Role) func(map[string]map[string]*anypb.Any) bool {
	return func(s map[string]map[string]*anypb.Any) bool {
		for _, typ := range adsclient.Types {
			served := a.Cache.Resources(role, typ)
			if len(served) != len(s[typ]) {
				return false
			}
			for _, r := range served {
				if got, ok := s[typ][r.Name]; !ok || !proto.Equal(got, r.Resource) {
					return false
				}
			}
		}
		return true
	}
}

func has(typ, name string) func(map[string]map[string]*anypb.Any) bool {
	return func(s map[string]map[string]*anypb.Any) bool { _, ok := s[typ][name]; return ok }
}

func TestTwoAgentsConfigureTheirGateways(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a := start(t, ma.config(t, mb, ""))
	a.Catalog.SetExports([]model.Export{inventory(), orders()})
	b := start(t, mb.config(t, ma, a.FederationAddr().String()))

	// mesh-a's ingress serves the export, mesh-b's egress the import, over
	// both kinds of xDS stream.
	ingress := connect(t, a.Agent, adsclient.Options{NodeID: "ingress-gateway", Delta: true})
	ingress.until(t, "the ingress listener", has(resource.ListenerType, "ingress/tls"))
	const scope, tcp = "egress/mesh-a/inventory/http", "egress/mesh-a/inventory/db"
	delta := connect(t, b.Agent, adsclient.Options{NodeID: "egress-gateway", Delta: true})
	sotw := connect(t, b.Agent, adsclient.Options{NodeID: "egress-gateway"})
	for _, g := range []*gateway{delta, sotw} {
		g.until(t, "the imported routing scopes and listener", func(s map[string]map[string]*anypb.Any) bool {
			return has(resource.ScopedRouteType, scope)(s) && has(resource.ListenerType, tcp)(s) &&
				has(resource.ScopedRouteType, "egress/mesh-a/orders/http")(s)
		})
		g.until(t, "all the agent serves", inSync(b.Agent, model.Egress))
	}
	port, ok := b.Runner.EgressPort("mesh-a", "inventory", "db")
	require.True(t, ok)
	require.Equal(t, uint32(21000), port)

	// A change to one service reaches the delta gateway as that service's
	// resources only.
	exp := inventory()
	exp.Ports = append(exp.Ports, model.ExportPort{Name: "grpc", Port: 9090, Protocol: model.GRPC, SNI: model.DefaultSNI(9090, exp.FQDN), Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: 9091}}})
	a.Catalog.SetExports([]model.Export{exp, orders()})
	ups := delta.until(t, "the new port", has(resource.ScopedRouteType, "egress/mesh-a/inventory/grpc"))
	for _, u := range ups {
		for _, n := range append(u.Updated, u.Removed...) {
			if u.TypeURL == resource.SecretType {
				continue
			}
			require.NotContains(t, n, "orders", "an update carried another service's %s %q", u.TypeURL, n)
		}
	}

	// The status of the xDS clients shows the ACKed version.
	require.Eventually(t, func() bool {
		for _, c := range b.XDS.Clients() {
			for _, ty := range c.Types {
				if c.Stream == "delta" && ty.TypeURL == resource.ClusterType && ty.AckedVersion != "" {
					return true
				}
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	require.Zero(t, delta.client.Nacks())
	require.Zero(t, sotw.client.Nacks())
}

func TestGatewayNackShowsInClientStatus(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a := start(t, ma.config(t, mb, ""))
	a.Catalog.SetExports([]model.Export{inventory()})
	g := connect(t, a.Agent, adsclient.Options{NodeID: "ingress-gateway", Delta: true, Reject: func(typeURL string, _ []*anypb.Any) error {
		if typeURL == resource.ListenerType {
			return fmt.Errorf("listener rejected for the test")
		}
		return nil
	}})
	g.until(t, "the clusters", has(resource.ClusterType, "ingress/inventory/http"))
	require.Eventually(t, func() bool {
		for _, c := range a.XDS.Clients() {
			for _, ty := range c.Types {
				if ty.TypeURL == resource.ListenerType && ty.LastNack != nil {
					return ty.LastNack.Reason == "listener rejected for the test"
				}
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
}

// A restarted agent's first push is the configuration its gateways had.
func TestRestartServesTheLastConfigurationFirst(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a := start(t, ma.config(t, mb, ""))
	a.Catalog.SetExports([]model.Export{inventory()})
	cb := mb.config(t, ma, a.FederationAddr().String())
	b := start(t, cb)
	before := connect(t, b.Agent, adsclient.Options{NodeID: "egress-gateway", Delta: true})
	before.until(t, "the import", has(resource.ListenerType, "egress/mesh-a/inventory/db"))
	before.until(t, "all the agent serves", inSync(b.Agent, model.Egress))
	want := before.view

	// Kill mesh-b's agent and the owner too, so nothing can be resynced:
	// what the new agent serves comes from its store.
	b.stop()
	a.stop()
	b2 := start(t, cb)
	after := connect(t, b2.Agent, adsclient.Options{NodeID: "egress-gateway", Delta: true})
	got := map[string]bool{}
	for len(got) < len(adsclient.Types) {
		select {
		case u := <-after.updates:
			got[u.TypeURL] = true
			after.apply(u)
		case <-time.After(20 * time.Second):
			t.Fatalf("restarted agent answered only %d types", len(got))
		}
	}
	if d := cmp.Diff(want, after.view, protocmp.Transform()); d != "" {
		t.Fatalf("first push after restart differs (-before +after):\n%s", d)
	}
}

// On a plaintext xDS listener (loopback only) a gateway is served no
// secret that holds a private key: nobody vouched for it. The same agent
// on its Unix socket serves its SVID.
func TestPlaintextXDSServesNoPrivateKey(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	cfg := ma.config(t, mb, "")
	cfg.XDS.Listen = "127.0.0.1:0"
	a := start(t, cfg)
	g := connect(t, a.Agent, adsclient.Options{NodeID: "egress-gateway", Delta: true})
	g.until(t, "the egress gateway's bundle", has(resource.SecretType, "meshfed/bundle/mesh-b_2eexample"))
	for name, res := range g.view[resource.SecretType] {
		s := &tlsv3.Secret{}
		require.NoError(t, res.UnmarshalTo(s))
		require.Nil(t, s.GetTlsCertificate().GetPrivateKey(), "secret %s holds a private key", name)
	}
	require.NotContains(t, g.view[resource.SecretType], "meshfed/svid/egress")
	require.Equal(t, "plaintext", a.XDS.Clients()[0].Channel)
}
