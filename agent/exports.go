package agent

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
	"github.com/meshfed/meshfed/registry/consul"
	"github.com/meshfed/meshfed/registry/file"
)

// exportFeed offers the local services to export to the catalog: it runs
// their source (the registry file, Consul, or both), which a reload may
// replace, and keeps how reading them goes.
type exportFeed struct {
	log *zap.Logger
	cat *catalog.Catalog
	// peers are the names of the configured peers, which a reload may
	// change: an export's consumer among none of them is warned of.
	peers atomic.Pointer[map[string]bool]
	// live is the source running now, nil when none is configured.
	live   atomic.Pointer[registry.Source]
	health *sink
	swaps  chan exportSwap
}

// exportSwap replaces the source of the exports: the old one is stopped,
// exports (the new source's first state) set, and the new one started.
type exportSwap struct {
	src     registry.Source
	exports []model.Export
	done    chan struct{}
}

// newExportFeed builds the source of cfg's exports and reads the registry
// file, so that the gateways' first configuration already holds the
// exports; run then follows the source.
func newExportFeed(cfg *config.Config, cat *catalog.Catalog, log *zap.Logger) (*exportFeed, error) {
	f := &exportFeed{log: log, cat: cat, swaps: make(chan exportSwap),
		health: &sink{name: "exports", state: SinkStatus{Name: "exports", Healthy: true}}}
	f.setPeers(cfg.Peers)
	src, exports, err := f.sources(cfg.Exports, cfg.Consul)
	if err != nil {
		return nil, err
	}
	if cfg.Exports.File != "" {
		f.set(exports)
	}
	f.live.Store(&src)
	return f, nil
}

func (f *exportFeed) setPeers(peers []config.Peer) {
	names := map[string]bool{}
	for _, p := range peers {
		names[p.Name] = true
	}
	f.peers.Store(&names)
}

// sources builds the source of the exports from the registry file of ex
// and Consul's export settings (either may be off), and reads the file:
// its services are the first exports, as at start.
func (f *exportFeed) sources(ex config.Exports, cc *consul.Config) (registry.Source, []model.Export, error) {
	sources := map[string]registry.Source{}
	var exports []model.Export
	if path := ex.File; path != "" {
		var err error
		if exports, err = file.Read(path, ex.MaxFileBytes); err != nil {
			return nil, nil, fmt.Errorf("exports.file: %w", err)
		}
		sources["exports.file"] = file.New(path, ex.MaxFileBytes, f.log)
	}
	if cc != nil && cc.Export != nil {
		src, err := consul.NewSource(*cc, f.log.Named("consul"))
		if err != nil {
			return nil, nil, fmt.Errorf("consul: %w", err)
		}
		sources["consul"] = src
	}
	switch len(sources) {
	case 0:
		return nil, exports, nil
	case 1:
		for _, s := range sources {
			return s, exports, nil
		}
	}
	return registry.Merge(f.log, sources), exports, nil
}

// set offers exports to peers, warning of consumers that are not
// configured peers: nothing is sent to them.
func (f *exportFeed) set(exports []model.Export) {
	peers := *f.peers.Load()
	for _, e := range exports {
		for _, c := range e.Consumers {
			if !peers[c] {
				f.log.Warn("export names a consumer that is not a configured peer", zap.String("export", e.Name), zap.String("consumer", c))
			}
		}
	}
	before := len(f.cat.Exports())
	f.cat.SetExports(exports)
	if len(exports) != before {
		f.log.Info("local services to export", zap.Int("exports", len(exports)))
	}
}

// replace hands src, whose first state is exports, to run, and returns
// once run has set them and started it.
func (f *exportFeed) replace(ctx context.Context, src registry.Source, exports []model.Export) error {
	swap := exportSwap{src: src, exports: exports, done: make(chan struct{})}
	select {
	case f.swaps <- swap:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-swap.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run runs the source of the exports, and replaces it when a reload says
// so. A source that fails (Consul unreachable) leaves the exports it gave
// last in place, makes the agent degraded, not dead, and is run again
// after a backoff.
func (f *exportFeed) run(ctx context.Context) error {
	src := *f.live.Load()
	backoff := time.Second
	update := func(exports []model.Export) {
		if !f.health.status().Healthy {
			f.log.Info("the source of the exports works again", zap.Int("exports", len(exports)))
		}
		f.health.record(nil, time.Now())
		f.set(exports)
	}
	for {
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		if src != nil {
			go func() { done <- src.Run(sctx, update) }()
		}
		select {
		case <-ctx.Done():
			cancel()
			if src != nil {
				<-done
			}
			return nil
		case err := <-done:
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = errors.New("it stopped")
			}
			f.health.record(err, time.Now())
			f.log.Warn("the source of the exports failed; the exports stay as they were, retrying", zap.Duration("backoff", backoff), zap.Error(err))
			t := time.NewTimer(backoff)
			backoff = min(2*backoff, time.Minute)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
				continue
			case swap := <-f.swaps:
				t.Stop()
				src, backoff = f.swap(swap), time.Second
			}
		case swap := <-f.swaps:
			cancel()
			if src != nil {
				<-done
			}
			src, backoff = f.swap(swap), time.Second
		}
	}
}

// swap sets the first exports of a new source, once the old one stopped,
// and returns the new source.
func (f *exportFeed) swap(s exportSwap) registry.Source {
	f.health.record(nil, time.Now())
	f.set(s.exports)
	f.live.Store(&s.src)
	close(s.done)
	return s.src
}

// status is how reading the exports goes: the source's runs, and a
// problem it keeps its last exports through (a broken registry file); nil
// when there is no source.
func (f *exportFeed) status() *SinkStatus {
	src := *f.live.Load()
	if src == nil {
		return nil
	}
	s := f.health.status()
	if st, ok := src.(interface{ Status() registry.SourceStatus }); ok {
		if err := st.Status().Err; err != nil && s.Healthy {
			s.Healthy, s.LastError = false, err.Error()
		}
	}
	return &s
}
