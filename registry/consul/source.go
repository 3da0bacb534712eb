package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
)

// readers is how many services are read at once. The two watches and
// the readers are every connection the source opens to Consul, however
// many services it follows: Consul refuses a client's connections past
// limits.http_max_conns_per_client (200), to every process of its host.
// More readers do not read faster on a loopback of two cores (2,000
// services: 0.35 s with 4 or 8, 0.78 s with one).
const readers = 4

// buildGap spaces the builds of the set: each costs the size of the set,
// and a sweep reads thousands of services in a second. A lone change is
// built at once.
const buildGap = 50 * time.Millisecond

// maxConns bounds the source's connections to Consul, idle ones
// included.
const maxConns = readers + 2

// Source is a registry.Source of the Consul services that Config.Export
// selects.
type Source struct {
	client *api.Client
	conns  *http.Transport // the client's
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
// It says whether that is news: a failure new or other than before, or
// the end of one.
func (s *Source) reporter(what string) func(error) bool {
	return func(err error) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.failing == nil {
			s.failing = map[string]error{}
		}
		_, fresh := s.failing[what]
		if err == nil {
			delete(s.failing, what)
		} else {
			fresh = false
			if old := s.failing[what]; old == nil || old.Error() != err.Error() {
				s.status.Reported++
				fresh = true
			}
			s.failing[what] = err
		}
		// Thousands of reads may fail together: the status tells a few.
		var errs []error
		for i, q := range slices.Sorted(maps.Keys(s.failing)) {
			if i == maxProblems {
				more, noun := len(s.failing)-maxProblems, "queries"
				if more == 1 {
					noun = "query"
				}
				errs = append(errs, fmt.Errorf("and %d more %s failing", more, noun))
				break
			}
			errs = append(errs, s.failing[q])
		}
		s.status.Err = errors.Join(errs...)
		return fresh
	}
}

// built records a set built from what Consul said, and the changes of
// the services it left out: why, or "" for one no longer left out.
func (s *Source) built(first bool, skipped map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !first {
		s.status.Reads++
	}
	if first || s.status.Skipped == nil {
		s.status.Skipped = map[string]string{} // a Run's first build says all
	}
	for name, why := range skipped {
		if why == "" {
			delete(s.status.Skipped, name)
		} else {
			s.status.Skipped[name] = why
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
	client, conns, err := cfg.boundedClient(export.MaxAnswerBytes, maxConns)
	if err != nil {
		return nil, err
	}
	return &Source{client: client, conns: conns, cfg: export, sel: newSelection(&export), log: log}, nil
}

// Run implements registry.Source. Two watches follow Consul: a blocking
// query on the list of services, whose index moves with every
// registration in the datacenter, and a probe of the checks. A change of
// registrations sweeps every candidate service, since the list does not
// tell which one changed; a change of checks marks only the services whose
// checks changed. The readers read what is marked, without blocking. An
// index that goes backwards starts it all over from 0.
func (s *Source) Run(ctx context.Context, update func([]model.Export)) error {
	// A Run that returned holds no connection to Consul.
	defer s.conns.CloseIdleConnections()
	s.mu.Lock()
	s.failing, s.status.Err = nil, nil // an earlier Run's
	s.mu.Unlock()
	r := newRun(s)
	at, err := r.load(ctx)
	if err != nil {
		return err
	}
	first, _ := r.build()
	update(first)
	built := time.Now()
	for {
		gen, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		r.start(gen, &wg, at)
		reset := false
		for !reset {
			select {
			case <-ctx.Done():
				// Every query ends before Run returns.
				cancel()
				wg.Wait()
				return nil
			case <-r.reset:
				reset = true
			case <-r.changed:
				// A burst is built every buildGap, not at every read.
				if !sleep(ctx, buildGap-time.Since(built)) {
					continue
				}
				built = time.Now()
				if set, changed := r.build(); changed {
					update(set)
				}
			}
		}
		cancel()
		wg.Wait()
		r.forget()
		at = indexes{}
	}
}
