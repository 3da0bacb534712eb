// Package runner keeps the xDS cache in step with the catalog: each change
// to an import or an export is translated, checked and handed to the cache
// on its own, so the work for one change does not grow with the catalog.
package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/store"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/cache"
)

// Config configures a Runner. Catalog, Store and Cache are required.
type Config struct {
	Catalog *catalog.Catalog
	// Store keeps the egress port allocations.
	Store *store.Store
	Cache *cache.Cache
	// Input gives the trust domain, the peers and the gateway addresses;
	// its imports, exports, ports and secrets are the runner's.
	Input snapshot.Input
	// Ports is the range of dedicated egress listener ports.
	Ports PortRange
	// Secrets returns the gateways' current certificates; SecretsChanged
	// signals when they changed. Both optional.
	Secrets        func() (snapshot.Secrets, error)
	SecretsChanged <-chan struct{}
	// Holdoff is how long the runner waits after a change for more before
	// it translates them together (default 10ms); bursts are translated at
	// least every MaxDelay (default 100ms).
	Holdoff, MaxDelay time.Duration
	// Applied, when set, is called after each batch reached the cache.
	Applied    func()
	Log        *zap.Logger
	Registerer prometheus.Registerer
}

// Runner translates catalog changes into cache changes.
type Runner struct {
	cfg Config
	log *zap.Logger
	m   *metrics
	sub *catalog.Subscription

	// mu guards what other goroutines read: the ports. Everything else
	// belongs to the goroutine running Start and then Run.
	mu    sync.RWMutex
	ports *ports

	in      snapshot.Input
	imports map[catalog.Key]*entry
	exports map[string]*entry
	secrets map[string]int // service-owned secret names, by number of owners
	gateway map[cache.Role][]string
	// httpPorts are the ports that have an egress HTTP listener.
	httpPorts map[uint32]bool
	ready     bool
}

// entry is what one service contributes to its gateway.
type entry struct {
	res   snapshot.ServiceResources
	names []typedName
	// portKeys are the egress port keys the import holds.
	portKeys []string
}

type typedName struct{ typeURL, name string }

// New loads the port allocations and subscribes to the catalog; call Start.
func New(cfg Config) (*Runner, error) {
	if cfg.Catalog == nil || cfg.Store == nil || cfg.Cache == nil {
		return nil, errors.New("runner: Catalog, Store and Cache are required")
	}
	if cfg.Ports.From == 0 || cfg.Ports.To < cfg.Ports.From {
		return nil, fmt.Errorf("gateways.egress.ports: %d-%d is not a port range", cfg.Ports.From, cfg.Ports.To)
	}
	if cfg.Holdoff <= 0 {
		cfg.Holdoff = 10 * time.Millisecond
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 100 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p, err := loadPorts(cfg.Store, cfg.Ports)
	if err != nil {
		return nil, err
	}
	r := &Runner{
		cfg:     cfg,
		log:     cfg.Log,
		m:       m,
		ports:   p,
		in:      cfg.Input,
		imports: map[catalog.Key]*entry{},
		exports: map[string]*entry{},
		secrets: map[string]int{},
		gateway: map[cache.Role][]string{},

		httpPorts: map[uint32]bool{},
	}
	r.in.Imports, r.in.Exports = nil, nil
	r.in.EgressPorts = p.byKey
	return r, nil
}

// Start translates the whole catalog and makes it the cache's state for
// both roles, which makes the cache answer gateways. The xDS server should
// serve only after it returned.
func (r *Runner) Start() error {
	if r.sub != nil {
		return errors.New("runner: Start called twice")
	}
	// Subscribe first: a change racing with the full read is then
	// translated again, never missed.
	r.sub = r.cfg.Catalog.Subscribe()
	start := time.Now()
	r.loadSecrets()
	var keys []catalog.Key
	for _, imp := range r.cfg.Catalog.Imports() {
		keys = append(keys, catalog.Key{Kind: catalog.KindImport, Peer: imp.Peer, ID: imp.ResourceID})
	}
	for _, exp := range r.cfg.Catalog.Exports() {
		keys = append(keys, catalog.Key{Kind: catalog.KindExport, ID: exp.Name})
	}
	b := r.translate(keys, true)
	for _, role := range []cache.Role{cache.RoleEgress, cache.RoleIngress} {
		if err := r.cfg.Cache.Replace(role, b.changes[role]); err != nil {
			return fmt.Errorf("runner: first %s configuration: %w", role, err)
		}
	}
	r.ready = true
	r.m.build.Observe(time.Since(start).Seconds())
	r.log.Info("first gateway configuration built",
		zap.Int("imports", len(r.imports)), zap.Int("exports", len(r.exports)),
		zap.Int("egress_resources", b.count(cache.RoleEgress)),
		zap.Int("ingress_resources", b.count(cache.RoleIngress)),
		zap.Duration("took", time.Since(start)))
	if r.cfg.Applied != nil {
		r.cfg.Applied()
	}
	return nil
}

// Run follows the catalog and the certificates until ctx is done. Start
// must have returned first.
func (r *Runner) Run(ctx context.Context) error {
	if r.sub == nil {
		return errors.New("runner: Run before Start")
	}
	defer r.sub.Close()
	for {
		secrets := false
		select {
		case <-ctx.Done():
			return nil
		case <-r.sub.C():
		case <-r.cfg.SecretsChanged:
			secrets = true
		}
		// Hold off for more, but not past MaxDelay.
		deadline := time.NewTimer(r.cfg.MaxDelay)
	hold:
		for {
			hold := time.NewTimer(r.cfg.Holdoff)
			select {
			case <-ctx.Done():
				hold.Stop()
				deadline.Stop()
				return nil
			case <-r.sub.C():
				hold.Stop()
			case <-r.cfg.SecretsChanged:
				secrets = true
				hold.Stop()
			case <-hold.C:
				break hold
			case <-deadline.C:
				hold.Stop()
				break hold
			}
		}
		deadline.Stop()
		r.step(secrets)
	}
}

// step translates what changed and applies it.
func (r *Runner) step(secretsChanged bool) {
	start := time.Now()
	keys := r.sub.Drain()
	if secretsChanged {
		r.loadSecrets()
		// Exports carry validation contexts built from the bundles.
		for name := range r.exports {
			keys = append(keys, catalog.Key{Kind: catalog.KindExport, ID: name})
		}
	}
	b := r.translate(keys, secretsChanged)
	for _, role := range []cache.Role{cache.RoleEgress, cache.RoleIngress} {
		if len(b.changes[role]) == 0 {
			continue
		}
		if err := r.cfg.Cache.Apply(role, b.changes[role]); err != nil {
			r.m.rejected.Add(1)
			r.log.Error("cache rejected resources", zap.String("role", string(role)), zap.Error(err))
		}
	}
	r.m.build.Observe(time.Since(start).Seconds())
	r.m.changes.Add(float64(len(keys)))
	if r.cfg.Applied != nil {
		r.cfg.Applied()
	}
}

func (r *Runner) loadSecrets() {
	if r.cfg.Secrets == nil {
		return
	}
	s, err := r.cfg.Secrets()
	if err != nil {
		// The gateways keep what they have; SDS never goes backwards.
		r.log.Warn("gateway certificates unavailable; keeping the current ones", zap.Error(err))
		return
	}
	r.in.Secrets = s
}

// EgressPort returns the dedicated egress listener port of an imported
// instance, if it has one.
func (r *Runner) EgressPort(peer, resourceID, instanceID string) (uint32, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.ports.byKey[snapshot.EgressKey(peer, resourceID, instanceID)]
	return p, ok
}

// Ports returns every allocated egress port by snapshot.EgressKey.
func (r *Runner) Ports() map[string]uint32 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.ports.snapshot()
}
