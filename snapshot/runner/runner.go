// Package runner keeps the xDS cache in step with the catalog. It is a loop
// over small parts: a Source of changes (the catalog), snapshot.Translator
// (changes of services into changes of resources), the port Allocator, and
// the cache. Each change to an import or an export is translated, checked
// and handed to the cache on its own, so the work for one change does not
// grow with the catalog.
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
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/cache"
)

// Source is where the runner reads imports and exports, and learns which
// changed: the catalog (CatalogSource).
type Source interface {
	Subscribe() Subscription
	Import(peer, id string) (model.Import, bool)
	Export(name string) (model.Export, bool)
	Imports() []model.Import
	Exports() []model.Export
}

// Subscription tells which keys changed since it was last drained.
type Subscription interface {
	C() <-chan struct{}
	Drain() []model.Key
	Close()
}

// Sink receives the resources of each role: the xDS cache.
type Sink interface {
	Apply(role model.Role, changes []cache.Change) error
	Replace(role model.Role, changes []cache.Change) error
}

// Config configures a Runner. Source, Ports and Sink are required.
type Config struct {
	Source Source
	Ports  *Allocator
	Sink   Sink
	// Settings give the trust domain, the peers and the gateway
	// addresses.
	Settings snapshot.Settings
	// Secrets returns the gateways' current certificates; SecretsChanged
	// signals when they changed. Both optional.
	Secrets        func() (snapshot.Secrets, error)
	SecretsChanged <-chan struct{}
	// Holdoff is how long the runner waits after a change for more before
	// it translates them together; bursts are translated at least every
	// MaxDelay. Zero translates each change at once.
	Holdoff, MaxDelay time.Duration
	// Applied, when set, is called after each batch reached the cache,
	// with what changed of the imports the gateways serve (at Start,
	// every one served), on the runner's goroutine.
	Applied    func(served []snapshot.ServedImport)
	Log        *zap.Logger
	Registerer prometheus.Registerer
}

// Runner translates catalog changes into cache changes.
type Runner struct {
	cfg Config
	log *zap.Logger
	m   *metrics
	sub Subscription

	// mu guards tr for readers on other goroutines (Served); the loop is
	// its only writer.
	mu sync.RWMutex
	tr *snapshot.Translator
	// settings brings the loop new settings (SetSettings).
	settings chan snapshot.Settings
}

// New returns a runner; Start builds the first configuration.
func New(cfg Config) (*Runner, error) {
	if cfg.Source == nil || cfg.Ports == nil || cfg.Sink == nil {
		return nil, errors.New("runner: Source, Ports and Sink are required")
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &Runner{cfg: cfg, log: cfg.Log, m: newMetrics(cfg.Registerer), tr: snapshot.NewTranslator(cfg.Settings), settings: make(chan snapshot.Settings)}, nil
}

// Start translates the whole catalog and makes it the cache's state for
// both roles, which makes the cache answer gateways; ports no import holds
// any more are freed. The xDS server should serve only after it returned.
func (r *Runner) Start() error {
	if r.sub != nil {
		return errors.New("runner: Start called twice")
	}
	// Subscribe first: a change racing with the full read is then
	// translated again, never missed.
	r.sub = r.cfg.Source.Subscribe()
	start := time.Now()
	keys, live := r.everything()
	if err := r.cfg.Ports.Prune(live); err != nil {
		return fmt.Errorf("runner: freeing the ports of gone imports: %w", err)
	}
	secrets, _ := r.secrets(true)
	res := r.translate(keys, secrets)
	for _, role := range model.GatewayRoles {
		if err := r.cfg.Sink.Replace(role, res.Changes[role]); err != nil {
			return fmt.Errorf("runner: first %s configuration: %w", role, err)
		}
	}
	r.m.build.Observe(time.Since(start).Seconds())
	r.log.Info("first gateway configuration built",
		zap.Int("services", len(keys)), zap.Int("rejected", len(res.Rejected)),
		zap.Int("egress_resources", len(res.Changes[model.Egress])),
		zap.Int("ingress_resources", len(res.Changes[model.Ingress])),
		zap.Duration("took", time.Since(start)))
	if r.cfg.Applied != nil {
		r.cfg.Applied(res.Served)
	}
	return nil
}

// everything is the key of every service, and the egress port keys of
// the imports.
func (r *Runner) everything() (keys []model.Key, ports []string) {
	for _, imp := range r.cfg.Source.Imports() {
		keys = append(keys, model.ImportKey(imp))
		ports = append(ports, snapshot.EgressPortKeys([]model.Import{imp})...)
	}
	for _, exp := range r.cfg.Source.Exports() {
		keys = append(keys, model.ExportKey(exp.Name))
	}
	return keys, ports
}

// SetSettings gives the translation new settings (a reload changed the
// peers or the gateways' timeouts): every service is translated again
// with them. It returns once the loop has taken them, or ctx ended.
func (r *Runner) SetSettings(ctx context.Context, s snapshot.Settings) error {
	select {
	case r.settings <- s:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
		case s := <-r.settings:
			r.mu.Lock()
			r.tr.SetSettings(s)
			r.mu.Unlock()
			all, _ := r.everything()
			r.step(false, all...)
			continue
		}
		more, ok := r.holdOff(ctx)
		if !ok {
			return nil
		}
		r.step(secrets || more)
	}
}

// holdOff waits for more changes, up to MaxDelay, and reports whether the
// certificates changed meanwhile; ok is false when ctx ended.
func (r *Runner) holdOff(ctx context.Context) (secrets, ok bool) {
	deadline := time.NewTimer(r.cfg.MaxDelay)
	defer deadline.Stop()
	for {
		hold := time.NewTimer(r.cfg.Holdoff)
		select {
		case <-ctx.Done():
			hold.Stop()
			return secrets, false
		case <-r.sub.C():
			hold.Stop()
		case <-r.cfg.SecretsChanged:
			secrets = true
			hold.Stop()
		case <-hold.C:
			return secrets, true
		case <-deadline.C:
			hold.Stop()
			return secrets, true
		}
	}
}

// step translates what changed, and also, and applies it.
func (r *Runner) step(secretsChanged bool, also ...model.Key) {
	start := time.Now()
	keys := append(r.sub.Drain(), also...)
	secrets, ok := r.secrets(secretsChanged)
	if ok {
		r.mu.RLock()
		keys = append(keys, r.tr.Retry(*secrets)...)
		r.mu.RUnlock()
	}
	res := r.translate(keys, secrets)
	for _, role := range model.GatewayRoles {
		if len(res.Changes[role]) == 0 {
			continue
		}
		if err := r.cfg.Sink.Apply(role, res.Changes[role]); err != nil {
			r.m.rejected.Add(1)
			r.log.Error("cache rejected resources", zap.String("role", string(role)), zap.Error(err))
		}
	}
	r.m.build.Observe(time.Since(start).Seconds())
	r.m.changes.Add(float64(len(keys)))
	if r.cfg.Applied != nil {
		r.cfg.Applied(res.Served)
	}
}

// secrets reads the certificates when asked to; ok is false when there is
// nothing new to use (the gateways keep what they have: SDS never goes
// backwards).
func (r *Runner) secrets(load bool) (*snapshot.Secrets, bool) {
	if !load || r.cfg.Secrets == nil {
		return nil, false
	}
	s, err := r.cfg.Secrets()
	if err != nil {
		r.log.Warn("gateway certificates unavailable; keeping the current ones", zap.Error(err))
		return nil, false
	}
	return &s, true
}

// translate reads the services of keys, proposes their ports, translates
// them and settles the ports on the outcome.
func (r *Runner) translate(keys []model.Key, secrets *snapshot.Secrets) snapshot.Result {
	ch, portKeys := r.read(keys)
	ch.Secrets = secrets
	var err error
	if ch.Ports, err = r.cfg.Ports.Propose(portKeys); err != nil {
		r.m.portErrors.Inc()
		r.log.Error("egress ports not allocated", zap.Error(err))
	}
	r.mu.Lock()
	res := r.tr.Apply(ch)
	r.mu.Unlock()
	if err := r.cfg.Ports.Settle(res.Held, res.Freed); err != nil {
		r.m.portErrors.Inc()
		r.log.Error("egress ports not stored", zap.Error(err))
	}
	for _, rej := range res.Rejected {
		r.m.invalid.WithLabelValues(rej.Key.Kind.String()).Inc()
		r.log.Warn("service translation failed the Envoy checks; its last good configuration stays",
			zap.String("kind", rej.Key.Kind.String()), zap.String("peer", rej.Key.Peer), zap.String("id", rej.Key.ID), zap.Error(rej.Err))
	}
	return res
}

// read gets the current value of each changed key, in order, and the
// egress port keys of the imports.
func (r *Runner) read(keys []model.Key) (snapshot.Changes, []string) {
	sortKeys(keys)
	var ch snapshot.Changes
	var ports []string
	for i, k := range keys {
		if i > 0 && keys[i-1] == k {
			continue
		}
		switch k.Kind {
		case model.KindImport:
			c := snapshot.ImportChange{Key: k}
			if imp, ok := r.cfg.Source.Import(k.Peer, k.ID); ok {
				c.Import = &imp
				ports = append(ports, snapshot.EgressPortKeys([]model.Import{imp})...)
			}
			ch.Imports = append(ch.Imports, c)
		case model.KindExport:
			c := snapshot.ExportChange{Key: k}
			if exp, ok := r.cfg.Source.Export(k.ID); ok {
				c.Export = &exp
			}
			ch.Exports = append(ch.Exports, c)
		}
	}
	return ch, ports
}

// Served reports whether an import is in the gateways' configuration: a
// service whose translation was rejected is not, and must not be
// advertised to workloads.
func (r *Runner) Served(peer, resourceID string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tr.Served(model.Key{Kind: model.KindImport, Peer: peer, ID: resourceID})
}

// EgressPort returns the dedicated egress listener port of an imported
// instance, if it has one.
func (r *Runner) EgressPort(peer, resourceID, instanceID string) (uint32, bool) {
	return r.cfg.Ports.Port(snapshot.EgressKey(peer, resourceID, instanceID))
}

// Ports returns every kept egress port by snapshot.EgressKey.
func (r *Runner) Ports() map[string]uint32 { return r.cfg.Ports.Ports() }

// CatalogSource is a catalog as a Source.
func CatalogSource(c *catalog.Catalog) Source { return catalogSource{c} }

type catalogSource struct{ *catalog.Catalog }

func (s catalogSource) Subscribe() Subscription { return s.Catalog.Subscribe() }
