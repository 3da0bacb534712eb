package peer_test

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/store"
)

// agent is one meshfed agent's federation side, with a real store on disk
// and a real mTLS listener on loopback.
type agent struct {
	t       *testing.T
	name    string
	pki     *pki
	dir     string
	addr    string
	specs   []peer.Spec
	cfg     func(*peer.Config)
	store   *store.Store
	catalog *catalog.Catalog
	manager *peer.Manager
	cancel  context.CancelFunc
	done    chan struct{}
	lis     net.Listener
	reg     *prometheus.Registry
	// wrapStore, when set before start, stands between the catalog and
	// the real store.
	wrapStore func(*store.Store) catalog.Store
}

func newAgent(t *testing.T, name string, p *pki, specs []peer.Spec, cfg func(*peer.Config)) *agent {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return newAgentOn(t, lis, name, p, specs, cfg)
}

// newAgentOn is newAgent on a listener of the test's choosing.
func newAgentOn(t *testing.T, lis net.Listener, name string, p *pki, specs []peer.Spec, cfg func(*peer.Config)) *agent {
	a := &agent{t: t, name: name, pki: p, dir: t.TempDir(), specs: specs, cfg: cfg}
	a.addr = lis.Addr().String()
	a.start(lis)
	t.Cleanup(a.stop)
	return a
}

// start runs the agent on lis, restoring what its store holds.
func (a *agent) start(lis net.Listener) {
	t := a.t
	st, err := store.Open(filepath.Join(a.dir, "meshfed.db"))
	require.NoError(t, err)
	a.store = st
	log := zaptest.NewLogger(t).Named(a.name)
	a.reg = prometheus.NewRegistry()
	var cst catalog.Store = st
	if a.wrapStore != nil {
		cst = a.wrapStore(st)
	}
	a.catalog = catalog.New(cst, log)
	cfg := peer.Config{
		Catalog:    a.catalog,
		TLS:        a.pki.tls(t, a.name),
		Ingress:    func() wire.Ingress { return a.ingress() },
		Window:     config.DefaultWindow,
		Grace:      config.DefaultGrace,
		MaxBatch:   config.DefaultMaxBatch,
		BatchDelay: config.DefaultBatchDelay,
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Log:        log,
		Registerer: a.reg,

		// As the agent sets it (peerConfig).
		ServicesPerResponse: config.DefaultMaxBatch,
	}
	if a.cfg != nil {
		a.cfg(&cfg)
	}
	m, err := peer.NewManager(cfg, a.specs)
	require.NoError(t, err)
	recs, err := st.Imports()
	require.NoError(t, err)
	require.NoError(t, a.catalog.Restore(recs))
	a.manager = m
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.done = make(chan struct{})
	srv := m.NewServer()
	a.lis = lis
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(lis) }()
	go func() { defer wg.Done(); m.Run(ctx) }()
	go func() {
		<-ctx.Done()
		srv.Stop()
		wg.Wait()
		close(a.done)
	}()
}

// stop ends the agent as a crash would: streams cut, store closed.
func (a *agent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.done
	a.cancel = nil
	require.NoError(a.t, a.store.Close())
}

// restart stops the agent and starts it again on the same address and store.
func (a *agent) restart() {
	a.stop()
	var lis net.Listener
	require.Eventually(a.t, func() bool {
		var err error
		lis, err = net.Listen("tcp", a.addr)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	a.start(lis)
}

func (a *agent) ingress() wire.Ingress {
	return wire.Ingress{
		Endpoints: []model.Endpoint{{Address: "192.0.2.10", Port: 15443}},
		SANs:      []string{"spiffe://" + a.pki.td(a.name) + "/meshfed/gateway/ingress"},
	}
}

func (a *agent) export(names []string, consumers ...string) {
	var out []model.Export
	for _, n := range names {
		out = append(out, export(n, a.pki.td(a.name), consumers...))
	}
	a.catalog.SetExports(out)
}

func export(name, td string, consumers ...string) model.Export {
	return model.Export{
		Name:      name,
		FQDN:      name + "." + td,
		Mode:      model.Terminate,
		Consumers: consumers,
		Ports: []model.ExportPort{{
			Name: "http", Port: 8080, Protocol: model.HTTP,
			Endpoints: []model.LocalEndpoint{{Address: "10.1.0.1", Port: 8080}},
		}},
	}
}

// importedIDs lists the resource ids a has imported from peer.
func (a *agent) importedIDs(peerName string) []string {
	var out []string
	for _, imp := range a.catalog.Imports() {
		if imp.Peer == peerName {
			out = append(out, imp.ResourceID)
		}
	}
	return out
}

func (a *agent) eventuallyImports(peerName string, want ...string) {
	a.t.Helper()
	require.EventuallyWithT(a.t, func(c *assert.CollectT) {
		assert.ElementsMatch(c, want, a.importedIDs(peerName))
	}, 10*time.Second, 10*time.Millisecond, "%s imports from %s", a.name, peerName)
}

func (a *agent) status(peerName string) peer.Status {
	for _, s := range a.manager.Status() {
		if s.Name == peerName {
			return s
		}
	}
	a.t.Fatalf("%s has no peer %s", a.name, peerName)
	return peer.Status{}
}

func spec(name, td, dial string) peer.Spec {
	return peer.Spec{Peer: catalog.Peer{Peer: model.Peer{Name: name, TrustDomain: td}, Policy: policy(td)}, Dial: dial}
}

// counter is the value of the counter name with exactly the given labels.
func (a *agent) counter(name string, labels map[string]string) float64 {
	a.t.Helper()
	mfs, err := a.reg.Gather()
	require.NoError(a.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func newCatalog(t *testing.T) *catalog.Catalog {
	st, err := store.Open(filepath.Join(t.TempDir(), "meshfed.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return catalog.New(st, zaptest.NewLogger(t))
}

// gauge is counter for const metrics, whatever their type.
func (a *agent) gauge(name string, labels map[string]string) float64 { return a.counter(name, labels) }
