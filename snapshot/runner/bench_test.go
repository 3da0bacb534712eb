package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/cache"
	"github.com/meshfed/meshfed/store"
)

// BenchmarkChange measures one catalog change through the runner:
// translation of that service, the Envoy checks, and the cache update
// (marshal, version, delivery to no watcher), at several catalog sizes. A
// third of the services are TCP (a listener each), the rest HTTP. The store
// is on tmpfs when there is one, so that the catalog's fsync does not hide
// the runner's work.
func BenchmarkChange(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		e := benchEnv(b, n)
		for _, kind := range []struct {
			name string
			i    int // the service changed
			edit func(*model.Service, int)
		}{
			{"endpoints", 1, func(s *model.Service, v int) { s.Endpoints[0].Port = uint32(20000 + v%2) }},
			{"tcp-service", 0, func(s *model.Service, v int) { s.Instances[0].SNI = fmt.Sprintf("v%d.%s", v%2, s.FQDN) }},
			{"http-service", 1, func(s *model.Service, v int) { s.Instances[0].Hostname = fmt.Sprintf("v%d.%s", v%2, s.FQDN) }},
		} {
			b.Run(fmt.Sprintf("services=%d/change=%s", n, kind.name), func(b *testing.B) {
				svc := benchService(kind.i)
				key := []model.Key{{Kind: model.KindImport, Peer: "mesh-b", ID: svc.Name}}
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					b.StopTimer()
					kind.edit(&svc, i)
					raw, _ := proto.Marshal(wire.FromModel(svc))
					if err := e.catalog.Upsert("mesh-b", svc.Name, svc, raw); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					batch := e.runner.translate(key, nil)
					for role, changes := range batch.Changes {
						if err := e.cache.Apply(role, changes); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

type benchRunner struct {
	catalog *catalog.Catalog
	cache   *cache.Cache
	runner  *Runner
}

func benchService(i int) model.Service {
	s := model.Service{
		Name: fmt.Sprintf("svc-%d", i), FQDN: fmt.Sprintf("svc-%d.mesh-b.example", i),
		Endpoints: []model.Endpoint{{Address: "10.1.0.1", Port: 15444}, {Address: "10.1.0.2", Port: 15444}},
		SANs:      []string{"spiffe://mesh-b.example/meshfed/gateway/ingress"},
		Instances: []model.Instance{{ID: "http", Protocol: model.HTTP, Port: 8080}},
	}
	if i%3 == 0 {
		s.Instances[0] = model.Instance{ID: "tcp", Protocol: model.TCP, Port: 5432}
	}
	return s
}

func benchEnv(b *testing.B, n int) *benchRunner {
	b.Helper()
	dir := b.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "meshfed-bench-"); err == nil {
			dir = d
			b.Cleanup(func() { _ = os.RemoveAll(d) })
		}
	}
	st, err := store.Open(filepath.Join(dir, "meshfed.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	recs := make([]store.Record, n)
	for i := range recs {
		raw, _ := proto.Marshal(wire.FromModel(benchService(i)))
		recs[i] = store.Record{Peer: "mesh-b", ResourceID: fmt.Sprintf("svc-%d", i), Service: raw}
	}
	if err := st.PutImports(recs); err != nil {
		b.Fatal(err)
	}
	cat := catalog.New(st, zap.NewNop())
	if err := cat.SetPeers([]catalog.Peer{{
		Peer:        model.Peer{Name: "mesh-b", TrustDomain: "mesh-b.example"},
		MaxServices: 2 * n,
		Policy:      validate.Policy{TrustDomain: spiffeid.RequireTrustDomainFromString("mesh-b.example")},
	}}); err != nil {
		b.Fatal(err)
	}
	if err := cat.Restore(recs); err != nil {
		b.Fatal(err)
	}
	c := cache.New(func(string) (model.Role, bool) { return model.Egress, true }, nil)
	secrets := testSecrets(b)
	ports, err := NewAllocator(st.Bucket("egress-ports"), PortRange{From: 20000, To: 60000})
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(Config{
		Source: CatalogSource(cat), Ports: ports, Sink: c,
		Settings: testSettings(),
		Secrets:  func() (snapshot.Secrets, error) { return secrets, nil },
		Holdoff:  time.Millisecond, MaxDelay: config.DefaultMaxDelay,
	})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := r.Start(); err != nil {
		b.Fatal(err)
	}
	b.Logf("first configuration of %d services: %s", n, time.Since(start))
	return &benchRunner{catalog: cat, cache: c, runner: r}
}

// BenchmarkExportChange measures one export's change through the
// translator and the cache, at several numbers of exports: of its
// endpoints, which touches its own resources only, and of its SNI, which
// sends the two ingress listeners, whose maps hold every exported SNI;
// B/listener is the ingress TLS listener's size, which grows with the
// exports.
func BenchmarkExportChange(b *testing.B) {
	secrets := testSecrets(b)
	for _, n := range []int{1_000, 10_000, 100_000} {
		tr := snapshot.NewTranslator(testSettings())
		c := cache.New(func(string) (model.Role, bool) { return model.Ingress, true }, nil)
		exps := make([]snapshot.ExportChange, n)
		for i := range exps {
			exp := benchExport(i, 0)
			exps[i] = snapshot.ExportChange{Key: model.ExportKey(exp.Name), Export: &exp}
		}
		res := tr.Apply(snapshot.Changes{Secrets: &secrets, Exports: exps})
		if len(res.Rejected) > 0 {
			b.Fatal(res.Rejected[0].Err)
		}
		if err := c.Apply(model.Ingress, res.Changes[model.Ingress]); err != nil {
			b.Fatal(err)
		}
		for _, kind := range []struct {
			name string
			v    func(i int) int // the version of export 1
		}{
			{"endpoints", func(i int) int { return 2 * (i % 2) }},
			{"filter-chain", func(i int) int { return i % 2 }},
		} {
			b.Run(fmt.Sprintf("exports=%d/change=%s", n, kind.name), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					exp := benchExport(1, kind.v(i))
					res := tr.Apply(snapshot.Changes{Exports: []snapshot.ExportChange{{Key: model.ExportKey(exp.Name), Export: &exp}}})
					if err := c.Apply(model.Ingress, res.Changes[model.Ingress]); err != nil {
						b.Fatal(err)
					}
				}
				for _, r := range c.Resources(model.Ingress, resource.ListenerType) {
					if r.Name == snapshot.IngressTLSName {
						b.ReportMetric(float64(len(r.Resource.GetValue())), "B/listener")
					}
				}
			})
		}
	}
}

// benchExport is export i at version v: an odd version changes its SNI
// (its filter chain), and v/2 its endpoint's port.
func benchExport(i, v int) model.Export {
	fqdn := fmt.Sprintf("svc-%d.mesh-a.example", i)
	sni := model.DefaultSNI(8080, fqdn)
	if v%2 == 1 {
		sni = "v1." + sni
	}
	return model.Export{
		Name: fmt.Sprintf("svc-%d", i), FQDN: fqdn, Mode: model.Terminate, Consumers: []string{"mesh-b"},
		Ports: []model.ExportPort{{Name: "http", Port: 8080, Protocol: model.HTTP, SNI: sni,
			Endpoints: []model.LocalEndpoint{{Address: "10.2.0.1", Port: uint32(9080 + v/2)}}}},
	}
}
