package runner

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/cache"
	"github.com/meshfed/meshfed/snapshot/snapshottest"
)

type env struct {
	t       *testing.T
	src     *memSource
	kv      *memKV
	cache   *cache.Cache
	runner  *Runner
	secrets snapshot.Secrets
	applied chan struct{}

	secretsChanged chan struct{}
}

func roles(id string) (model.Role, bool) {
	switch id {
	case "egress":
		return model.Egress, true
	case "ingress":
		return model.Ingress, true
	}
	return "", false
}

var (
	testSecrets  = snapshottest.Secrets
	testSettings = snapshottest.Settings
	service      = snapshottest.Service
)

// newEnv builds a runner over src and kv (fresh ones when nil) with ports
// 21000-21002.
func newEnv(t *testing.T, src *memSource, kv *memKV, secrets snapshot.Secrets) *env {
	t.Helper()
	if src == nil {
		src = newMemSource()
	}
	if kv == nil {
		kv = newMemKV()
	}
	log := zaptest.NewLogger(t)
	e := &env{t: t, src: src, kv: kv, cache: cache.New(roles, log), secrets: secrets, applied: make(chan struct{}, 100), secretsChanged: make(chan struct{})}
	ports, err := NewAllocator(kv, PortRange{From: 21000, To: 21002})
	require.NoError(t, err)
	e.runner, err = New(Config{
		Source: src, Ports: ports, Sink: e.cache, Settings: testSettings(),
		Secrets:        func() (snapshot.Secrets, error) { return e.secrets, nil },
		SecretsChanged: e.secretsChanged,
		Holdoff:        config.DefaultHoldoff,
		MaxDelay:       config.DefaultMaxDelay,
		Applied:        func([]snapshot.ServedImport) { e.applied <- struct{}{} },
		Log:            log,
	})
	require.NoError(t, err)
	return e
}

func (e *env) start() {
	e.t.Helper()
	require.NoError(e.t, e.runner.Start())
	<-e.applied
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.runner.Run(ctx)
	}()
	e.t.Cleanup(func() {
		cancel()
		<-done
	})
}

// wait blocks until the runner applied a batch after the call.
func (e *env) wait() {
	e.t.Helper()
	select {
	case <-e.applied:
	case <-time.After(10 * time.Second):
		e.t.Fatal("runner applied nothing")
	}
}

func (e *env) names(role model.Role, typeURL string) []string {
	var out []string
	for _, r := range e.cache.Resources(role, typeURL) {
		out = append(out, r.Name)
	}
	return out
}

// version is the version of the named resource; it fails the test when
// there is none.
func (e *env) version(role model.Role, typeURL, name string) string {
	e.t.Helper()
	for _, r := range e.cache.Resources(role, typeURL) {
		if r.Name == name {
			return r.Version
		}
	}
	e.t.Fatalf("no %s %q", typeURL, name)
	return ""
}

// upstreams are the clusters of the imports of svcs, sorted.
func (e *env) upstreams(svcs ...model.Service) []string {
	var out []string
	for _, svc := range svcs {
		for _, c := range snapshot.EgressResources(testSettings(), e.secrets, snapshottest.Import(svc), nil).Clusters {
			out = append(out, c.GetName())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (e *env) upsert(svc model.Service) {
	e.src.putImport(snapshottest.Import(svc))
}

func TestRunnerFollowsTheCatalog(t *testing.T) {
	e := newEnv(t, nil, nil, testSecrets(t))
	e.upsert(service("web", model.HTTP, 8080, "10.0.0.1"))
	e.start()

	require.Equal(t, e.upstreams(service("web", model.HTTP, 8080, "10.0.0.1")), e.names(model.Egress, resource.ClusterType))
	require.Equal(t, []string{"egress/http/8080"}, e.names(model.Egress, resource.ListenerType))
	require.Equal(t, []string{"egress/mesh-b/web/p"}, e.names(model.Egress, resource.ScopedRouteType))
	require.Len(t, e.names(model.Egress, resource.SecretType), 2, "the egress SVID and mesh-b's bundle")
	require.True(t, e.cache.Ready(model.Egress))
	require.True(t, e.cache.Ready(model.Ingress))

	// An endpoint change makes another upstream: its cluster replaces
	// the old one, and the routing scope names it; the listener stays.
	listener0 := e.cache.Resources(model.Egress, resource.ListenerType)[0].Version
	route0 := e.cache.Resources(model.Egress, resource.ScopedRouteType)[0].Version
	require.Empty(t, e.names(model.Egress, resource.EndpointType))
	web := service("web", model.HTTP, 8080, "10.0.0.2")
	e.upsert(web)
	e.wait()
	require.Equal(t, listener0, e.cache.Resources(model.Egress, resource.ListenerType)[0].Version)
	require.NotEqual(t, route0, e.cache.Resources(model.Egress, resource.ScopedRouteType)[0].Version)
	require.Equal(t, e.upstreams(web), e.names(model.Egress, resource.ClusterType))

	// A TCP service gets a dedicated listener on the first port of the range.
	e.upsert(service("db", model.TCP, 5432, "10.0.0.3"))
	e.wait()
	require.Equal(t, []string{"egress/http/8080", "egress/mesh-b/db/p"}, e.names(model.Egress, resource.ListenerType))
	port, ok := e.runner.EgressPort("mesh-b", "db", "p")
	require.True(t, ok)
	require.Equal(t, uint32(21000), port)

	// A second HTTP service on the same port shares its listener, which
	// does not change; one on another port gets its own. Each has a
	// routing scope of its own.
	e.upsert(service("api", model.HTTP, 8080, "10.0.0.4"))
	e.upsert(service("admin", model.HTTP, 9901, "10.0.0.5"))
	e.wait()
	require.Equal(t, []string{"egress/http/8080", "egress/http/9901", "egress/mesh-b/db/p"}, e.names(model.Egress, resource.ListenerType))
	require.Equal(t, listener0, e.cache.Resources(model.Egress, resource.ListenerType)[0].Version)
	require.Equal(t, []string{"egress/mesh-b/admin/p", "egress/mesh-b/api/p", "egress/mesh-b/web/p"}, e.names(model.Egress, resource.ScopedRouteType))
	sc := &route.ScopedRouteConfiguration{}
	require.NoError(t, e.cache.Resources(model.Egress, resource.ScopedRouteType)[0].Resource.UnmarshalTo(sc))
	require.Equal(t, "admin.mesh-b.example:9901", sc.GetKey().GetFragments()[0].GetStringKey())

	// Deleting removes every resource of the service, and the listener of
	// a port nobody serves any more.
	e.src.deleteImport("mesh-b", "web")
	e.src.deleteImport("mesh-b", "admin")
	e.wait()
	require.Equal(t, e.upstreams(service("api", model.HTTP, 8080, "10.0.0.4"), service("db", model.TCP, 5432, "10.0.0.3")), e.names(model.Egress, resource.ClusterType))
	require.Equal(t, []string{"egress/http/8080", "egress/mesh-b/db/p"}, e.names(model.Egress, resource.ListenerType))
	require.Equal(t, []string{"egress/mesh-b/api/p"}, e.names(model.Egress, resource.ScopedRouteType))
}

func TestRunnerExports(t *testing.T) {
	e := newEnv(t, nil, nil, testSecrets(t))
	e.start()
	require.Empty(t, e.names(model.Ingress, resource.ListenerType), "no export, no ingress listener")

	exp := model.Export{
		Name: "inventory", FQDN: "inventory.mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b"},
		Ports: []model.ExportPort{{Name: "http", Port: 8080, Protocol: model.HTTP, SNI: model.DefaultSNI(8080, "inventory.mesh-a.example"), Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: 9080}}}},
	}
	e.src.setExports([]model.Export{exp})
	e.wait()
	// The TLS listener takes the SNI to mesh-b's chain, the router to the
	// export's.
	require.Equal(t, []string{snapshot.IngressRouterName, snapshot.IngressTLSName}, e.names(model.Ingress, resource.ListenerType))
	require.Equal(t, []string{"ingress/inventory/http", snapshot.IngressRouterName}, e.names(model.Ingress, resource.ClusterType))
	inventory0 := e.version(model.Ingress, resource.ClusterType, "ingress/inventory/http")
	router0 := e.version(model.Ingress, resource.ClusterType, snapshot.IngressRouterName)

	// Another export changes none of the first one's own resources; the
	// listeners take its SNI.
	tls0 := e.version(model.Ingress, resource.ListenerType, snapshot.IngressTLSName)
	other := exp
	other.Name, other.FQDN = "orders", "orders.mesh-a.example"
	other.Ports = []model.ExportPort{{Name: "http", Port: 8080, Protocol: model.HTTP, SNI: model.DefaultSNI(8080, other.FQDN), Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: 9081}}}}
	e.src.setExports([]model.Export{exp, other})
	e.wait()
	require.Equal(t, []string{"ingress/inventory/http", "ingress/orders/http", snapshot.IngressRouterName}, e.names(model.Ingress, resource.ClusterType))
	require.Equal(t, inventory0, e.version(model.Ingress, resource.ClusterType, "ingress/inventory/http"))
	require.Equal(t, router0, e.version(model.Ingress, resource.ClusterType, snapshot.IngressRouterName))
	require.NotEqual(t, tls0, e.version(model.Ingress, resource.ListenerType, snapshot.IngressTLSName))
	secrets := e.names(model.Ingress, resource.SecretType)
	require.Len(t, secrets, 2, "the ingress SVID and the validator of mesh-b: %v", secrets)

	e.src.setExports(nil)
	e.wait()
	require.Empty(t, e.names(model.Ingress, resource.ListenerType))
	require.Empty(t, e.names(model.Ingress, resource.ClusterType))
	require.Equal(t, []string{snapshot.SVIDSecretName(model.Ingress)}, e.names(model.Ingress, resource.SecretType))
}

func TestRunnerKeepsLastGoodService(t *testing.T) {
	e := newEnv(t, nil, nil, testSecrets(t))
	e.upsert(service("web", model.HTTP, 8080, "10.0.0.1"))
	e.start()
	before := e.cache.Resources(model.Egress, resource.ClusterType)

	// The SAN check needs mesh-b's bundle: without it the new version
	// fails the checks (a secret it names does not exist) and the old one
	// stays.
	delete(e.secrets.Bundles, "mesh-b.example")
	e.secretsChanged <- struct{}{}
	e.wait()
	require.Equal(t, []string{snapshot.SVIDSecretName(model.Egress)}, e.names(model.Egress, resource.SecretType))
	e.upsert(service("web", model.HTTP, 8080, "10.0.0.9"))
	e.wait()
	// The cluster carries its endpoints: the old ones stay with it.
	after := e.cache.Resources(model.Egress, resource.ClusterType)
	require.Equal(t, before, after)
	require.NotContains(t, string(after[0].Resource.GetValue()), "10.0.0.9")
}

func TestPortsSurviveRestartAndRangeFull(t *testing.T) {
	e := newEnv(t, nil, nil, testSecrets(t))
	for _, n := range []string{"a", "b", "c", "d"} {
		e.upsert(service(n, model.TCP, 5432, "10.0.0.1"))
	}
	e.start()
	got := e.runner.Ports()
	require.Len(t, got, 3, "the range holds three ports")
	listeners := e.names(model.Egress, resource.ListenerType)
	require.Len(t, listeners, 3, "three dedicated: %v", listeners)

	// Freeing a port gives it to the waiting service on its next change.
	e.src.deleteImport("mesh-b", "a")
	e.wait()
	e.upsert(service("d", model.TCP, 5433, "10.0.0.1"))
	e.wait()
	got = e.runner.Ports()
	require.Len(t, got, 3)
	require.Equal(t, uint32(21000), got[snapshot.EgressKey("mesh-b", "d", "p")], "a's port, freed")
	want := e.cache.Resources(model.Egress, resource.ListenerType)

	// A restart with the same store keeps every port and every listener.
	e2 := newEnv(t, e.src, e.kv, e.secrets)
	e2.start()
	require.Equal(t, got, e2.runner.Ports())
	requireSameResources(t, want, e2.cache.Resources(model.Egress, resource.ListenerType))
}

func requireSameResources(t *testing.T, want, got []*discovery.Resource) {
	t.Helper()
	name := func(r *discovery.Resource) string { return r.Name + "@" + r.Version }
	require.Equal(t, slices.Collect(mapped(want, name)), slices.Collect(mapped(got, name)))
}

func mapped[T, U any](s []T, f func(T) U) func(func(U) bool) {
	return func(yield func(U) bool) {
		for _, v := range s {
			if !yield(f(v)) {
				return
			}
		}
	}
}

// Imports restored before their peer's bundle arrived (from a bundle
// endpoint, after start) fail the checks and are not served: one that had
// a port keeps it, a new one holds none, and the bundle's arrival
// translates both.
func TestRejectedImportsWaitForTheirBundle(t *testing.T) {
	secrets := testSecrets(t)
	bundle := secrets.Bundles["mesh-b.example"]
	delete(secrets.Bundles, "mesh-b.example")
	kv := newMemKV()
	restored, fresh := snapshot.EgressKey("mesh-b", "db", "p"), snapshot.EgressKey("mesh-b", "queue", "p")
	kv.m[restored] = "21002"
	e := newEnv(t, nil, kv, secrets)
	e.upsert(service("db", model.TCP, 5432, "10.0.0.1"))
	e.upsert(service("queue", model.TCP, 5672, "10.0.0.2"))
	e.start()

	require.Empty(t, e.names(model.Egress, resource.ClusterType))
	require.False(t, e.runner.Served("mesh-b", "db"))
	require.False(t, e.runner.Served("mesh-b", "queue"))
	require.Equal(t, map[string]uint32{restored: 21002}, e.runner.Ports(), "a new rejected service holds no port")
	require.Equal(t, map[string]string{restored: "21002"}, kv.content())

	e.secrets.Bundles["mesh-b.example"] = bundle
	e.secretsChanged <- struct{}{}
	e.wait()
	require.Equal(t, e.upstreams(service("db", model.TCP, 5432, "10.0.0.1"), service("queue", model.TCP, 5672, "10.0.0.2")), e.names(model.Egress, resource.ClusterType))
	require.Equal(t, []string{"egress/mesh-b/db/p", "egress/mesh-b/queue/p"}, e.names(model.Egress, resource.ListenerType))
	require.True(t, e.runner.Served("mesh-b", "db"))
	require.True(t, e.runner.Served("mesh-b", "queue"))
	port, ok := e.runner.EgressPort("mesh-b", "queue", "p")
	require.True(t, ok)
	require.Equal(t, map[string]string{restored: "21002", fresh: strconv.FormatUint(uint64(port), 10)}, kv.content())

	// Deleting one frees its port in the store too.
	e.src.deleteImport("mesh-b", "db")
	e.wait()
	require.Equal(t, []string{fresh}, slices.Collect(maps.Keys(kv.content())))
	require.False(t, e.runner.Served("mesh-b", "db"))
}

// A restart drops the ports of imports deleted while the agent was down.
func TestStartPrunesOrphanPorts(t *testing.T) {
	kv := newMemKV()
	kv.m[snapshot.EgressKey("mesh-b", "gone", "p")] = "21000"
	kv.m[snapshot.EgressKey("mesh-b", "db", "p")] = "21001"
	e := newEnv(t, nil, kv, testSecrets(t))
	e.upsert(service("db", model.TCP, 5432, "10.0.0.1"))
	e.start()
	require.Equal(t, map[string]string{snapshot.EgressKey("mesh-b", "db", "p"): "21001"}, kv.content())
	port, ok := e.runner.EgressPort("mesh-b", "db", "p")
	require.True(t, ok)
	require.Equal(t, uint32(21001), port, "the port it had")
}

// Peers changed by a reload reach the translation: an export's consumer
// that becomes a peer is let through the ingress.
func TestRunnerFollowsPeers(t *testing.T) {
	secrets := testSecrets(t)
	ca, err := certs.NewTestCA(spiffeid.RequireTrustDomainFromString("mesh-c.example"))
	require.NoError(t, err)
	secrets.Bundles["mesh-c.example"] = string(ca.CertPEM())
	e := newEnv(t, nil, nil, secrets)
	e.src.setExports([]model.Export{{
		Name: "inventory", FQDN: "inventory.mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b", "mesh-c"},
		Ports: []model.ExportPort{{Name: "http", Port: 8080, Protocol: model.HTTP, SNI: model.DefaultSNI(8080, "inventory.mesh-a.example"), Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: 9080}}}},
	}})
	e.start()
	listener := func() string {
		for _, l := range e.cache.Resources(model.Ingress, resource.ListenerType) {
			if l.Name == snapshot.IngressTLSName {
				return string(l.Resource.GetValue())
			}
		}
		t.Fatal("no ingress TLS listener")
		return ""
	}
	require.NotContains(t, listener(), "mesh-c.example", "mesh-c is not a peer yet")

	in := testSettings()
	in.Peers = append(in.Peers, model.Peer{Name: "mesh-c", TrustDomain: "mesh-c.example"})
	require.NoError(t, e.runner.SetSettings(context.Background(), in))
	e.wait()
	require.Contains(t, listener(), "mesh-c.example")
}
