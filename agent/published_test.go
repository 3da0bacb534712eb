package agent

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/dnsserver"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
	"github.com/meshfed/meshfed/snapshot"
)

// recorded is what a registry was asked: each Sync's set and each
// Apply's changes.
type recorded struct {
	mu    sync.Mutex
	calls []string
	got   chan struct{}
}

func (r *recorded) note(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
	r.got <- struct{}{}
}

func (r *recorded) Sync(_ context.Context, imports []registry.Imported) error {
	s := "sync"
	for _, im := range imports {
		s += " " + im.Peer + "/" + im.Name + "/" + im.Instance
	}
	r.note(s)
	return nil
}

func (r *recorded) Apply(_ context.Context, set, gone []registry.Imported) error {
	s := "apply"
	for _, im := range set {
		s += " +" + im.Peer + "/" + im.Name + "/" + im.Instance
	}
	for _, im := range gone {
		s += " -" + im.Peer + "/" + im.Name + "/" + im.Instance
	}
	r.note(s)
	return nil
}

func (r *recorded) next(t *testing.T) string {
	t.Helper()
	select {
	case <-r.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the registry was asked nothing")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[len(r.calls)-1]
}

func served(name string, instances ...string) snapshot.ServedImport {
	imp := model.Import{Peer: "mesh-b", ResourceID: name, LocalFQDN: name + ".mesh-b.example",
		Service: model.Service{Name: name, FQDN: name + ".mesh-b.example"}}
	ports := map[string]uint32{}
	for i, id := range instances {
		imp.Service.Instances = append(imp.Service.Instances, model.Instance{ID: id, Protocol: model.TCP})
		ports[id] = 21000 + uint32(i)
	}
	return snapshot.ServedImport{Key: model.ImportKey(imp), Import: &imp, Ports: ports}
}

// What the gateways serve reaches DNS at once and the registries change
// by change: the whole set once, then each change alone, the instances
// gone included; a name is answered while its import is served.
func TestPublishedFollowsTheChanges(t *testing.T) {
	log := zaptest.NewLogger(t)
	d, err := dnsserver.New(dnsserver.Config{Listen: "127.0.0.1:0", Log: log, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	require.NoError(t, d.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	p := newPublished("127.0.0.2", log)
	p.dns = d
	r := &recorded{got: make(chan struct{}, 100)}
	p.sinks = []*sink{{name: "recorded", Sink: r}}
	ran := make(chan struct{})
	go func() { p.run(ctx); close(ran) }()
	t.Cleanup(func() {
		cancel()
		<-ran
		require.NoError(t, <-done)
	})
	require.Equal(t, "sync", r.next(t), "the whole set, empty, at start")

	p.apply([]snapshot.ServedImport{served("db", "pg", "admin"), served("web", "http")})
	require.Equal(t, "apply +mesh-b/db/pg +mesh-b/db/admin +mesh-b/web/http", r.next(t))
	require.Equal(t, []string{"db.mesh-b.example.\t5\tIN\tA\t127.0.0.2"}, answers(t, d, "db.mesh-b.example.", dns.TypeA))

	p.apply([]snapshot.ServedImport{served("db", "pg")})
	require.Equal(t, "apply +mesh-b/db/pg -mesh-b/db/admin", r.next(t))
	p.apply([]snapshot.ServedImport{{Key: served("web").Key}})
	require.Equal(t, "apply -mesh-b/web/http", r.next(t))
	require.Empty(t, answers(t, d, "web.mesh-b.example.", dns.TypeA))
	require.Len(t, answers(t, d, "db.mesh-b.example.", dns.TypeA), 1)
	require.Equal(t, map[model.Key][]registry.Imported{served("db").Key: {{Peer: "mesh-b", Name: "db", FQDN: "db.mesh-b.example",
		LocalFQDN: "db.mesh-b.example", Instance: "pg", Protocol: model.TCP, Address: "127.0.0.2", Port: 21000}}}, p.instances())
}

func answers(t *testing.T, d *dnsserver.Server, name string, qtype uint16) []string {
	t.Helper()
	resp, _, err := (&dns.Client{Net: "udp"}).Exchange(new(dns.Msg).SetQuestion(name, qtype), d.Addr().String())
	require.NoError(t, err)
	var out []string
	for _, rr := range resp.Answer {
		out = append(out, rr.String())
	}
	return out
}
