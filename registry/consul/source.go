package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
)

// Source is a registry.Source of the Consul services that Config.Export
// selects.
type Source struct {
	client *api.Client
	cfg    ExportConfig
	sel    selection
	log    *zap.Logger

	mu      sync.Mutex
	status  registry.SourceStatus
	failing map[string]error // by query
}

// Status reports how reading Consul goes: failing queries, services left
// out and why.
func (s *Source) Status() registry.SourceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Skipped = maps.Clone(st.Skipped)
	return st
}

// reporter records the failures of one query, nil when it works again.
func (s *Source) reporter(what string) func(error) {
	return func(err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.failing == nil {
			s.failing = map[string]error{}
		}
		if err == nil {
			delete(s.failing, what)
		} else {
			if old := s.failing[what]; old == nil || old.Error() != err.Error() {
				s.status.Reported++
			}
			s.failing[what] = err
		}
		var errs []error
		for _, q := range slices.Sorted(maps.Keys(s.failing)) {
			errs = append(errs, s.failing[q])
		}
		s.status.Err = errors.Join(errs...)
	}
}

// built records a set built from what Consul said, and the services it
// left out.
func (s *Source) built(first bool, problems map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !first {
		s.status.Reads++
	}
	s.status.Skipped = map[string]string{}
	for name, p := range problems {
		if p != "" {
			s.status.Skipped[name] = p
		}
	}
}

// NewSource checks cfg, which must have Export, and connects nothing yet.
func NewSource(cfg Config, log *zap.Logger) (*Source, error) {
	if cfg.Export == nil {
		return nil, errors.New("consul: export is not configured")
	}
	export := *cfg.Export
	cfg.Export = &export // Default writes to it; the caller's stays as it was
	cfg.Default()
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	client, err := cfg.client(export.MaxAnswerBytes)
	if err != nil {
		return nil, err
	}
	return &Source{client: client, cfg: export, sel: newSelection(&export), log: log}, nil
}

// sourceRun is the state of one Run: the passing instances of every
// candidate service, each kept current by a blocking query of its own.
type sourceRun struct {
	src     *Source
	ctx     context.Context
	wg      sync.WaitGroup
	changed chan struct{} // a token when the set may have changed

	mu       sync.Mutex
	entries  map[string][]*api.ServiceEntry
	watching map[string]context.CancelFunc
	kept     map[string]model.Export // last valid export of each service
	problems map[string]string       // last problem logged per service
	built    bool                    // the first set was built
}

// Run implements registry.Source.
func (s *Source) Run(ctx context.Context, update func([]model.Export)) error {
	ctx, cancel := context.WithCancel(ctx)
	r := &sourceRun{
		src: s, ctx: ctx, changed: make(chan struct{}, 1),
		entries: map[string][]*api.ServiceEntry{}, watching: map[string]context.CancelFunc{},
		kept: map[string]model.Export{}, problems: map[string]string{},
	}
	// Every watch ends before Run returns.
	defer r.wg.Wait()
	defer cancel()

	// The first state is read without blocking, so that an unreachable
	// Consul or a refused token is Run's error rather than a log line.
	services, meta, err := s.client.Catalog().Services((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul: listing services: %w", untrusted.Error(err))
	}
	indexes := map[string]uint64{}
	for _, name := range r.candidates(services) {
		entries, m, err := s.client.Health().Service(name, "", true, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("consul: reading the health of service %s: %w", untrusted.Quote(name), untrusted.Error(err))
		}
		r.entries[name], indexes[name] = entries, m.LastIndex
	}
	r.follow(services, indexes)
	last := r.build()
	update(last)

	r.wg.Go(func() {
		watch(ctx, s.log, "catalog services", nextIndex(0, meta.LastIndex), s.client.Catalog().Services,
			func(services map[string][]string) { r.follow(services, nil) }, s.reporter("catalog services"))
	})
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.changed:
		}
		if set := r.build(); !reflect.DeepEqual(set, last) {
			last = set
			update(set)
		}
	}
}

func (r *sourceRun) candidates(services map[string][]string) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(services)) {
		if r.src.sel.candidate(name, services[name]) {
			out = append(out, name)
		}
	}
	return out
}

// follow starts a health watch for each new candidate (from the index
// given, else from scratch) and stops those no longer listed.
func (r *sourceRun) follow(services map[string][]string, indexes map[string]uint64) {
	want := map[string]bool{}
	for _, name := range r.candidates(services) {
		want[name] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, stop := range r.watching {
		if !want[name] {
			stop()
			delete(r.watching, name)
			delete(r.entries, name)
			r.src.reporter("health of service " + untrusted.Quote(name))(nil)
		}
	}
	for name := range want {
		if _, ok := r.watching[name]; ok {
			continue
		}
		wctx, stop := context.WithCancel(r.ctx)
		r.watching[name] = stop
		r.wg.Go(func() {
			watch(wctx, r.src.log, "health of service "+untrusted.Quote(name), nextIndex(0, indexes[name]),
				func(q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
					return r.src.client.Health().Service(name, "", true, q)
				},
				func(entries []*api.ServiceEntry) {
					r.mu.Lock()
					defer r.mu.Unlock()
					// A watch stopped by follow must not bring back what
					// follow removed.
					if wctx.Err() == nil {
						r.src.log.Debug("consul service health changed", zap.String("service", untrusted.Message(name)), zap.Int("passing", len(entries)))
						r.entries[name] = entries
						r.signal()
					}
				}, r.src.reporter("health of service "+untrusted.Quote(name)))
		})
	}
	r.signal()
}

func (r *sourceRun) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// build makes the set from the instances held, sorted by name.
func (r *sourceRun) build() []model.Export {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := r.src.cfg.OnEmpty == OnEmptyKeep
	out := []model.Export{}
	all := map[string]bool{}
	for n := range r.entries {
		all[n] = true
	}
	if keep {
		// A kept service may have left the catalog: it stays all the same.
		for n := range r.kept {
			all[n] = true
		}
	}
	problems := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(all)) {
		e, ok, problem := r.src.export(name, r.entries[name])
		// Logged when it changes, not at every build.
		if problem != "" && problem != r.problems[name] {
			r.src.log.Warn("consul service not exported as it stands", zap.String("service", untrusted.Message(name)), zap.String("problem", problem))
		}
		problems[name] = problem
		switch {
		case ok:
			if keep {
				r.kept[name] = e
			}
			out = append(out, e)
		case keep && r.kept[name].Name != "":
			out = append(out, r.kept[name])
		}
	}
	r.problems = problems
	r.src.built(!r.built, problems)
	r.built = true
	return out
}
