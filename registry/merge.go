package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/model"
)

// Merge runs several sources, keyed by the name that errors and logs give
// them, as one Source whose set is the union of their latest sets. The
// first set is handed on once every source has delivered its own. A service
// name or fqdn that two sources both yield is an error: at start Run
// returns it, later the conflict is logged and the last good union stays.
func Merge(log *zap.Logger, sources map[string]Source) *Merged {
	return &Merged{log: log, sources: sources}
}

// Merged is the Source Merge returns.
type Merged struct {
	log     *zap.Logger
	sources map[string]Source

	mu     sync.Mutex
	status SourceStatus
}

// Status reports the conflict that keeps the last union, if any; the
// sources' own problems are theirs to report.
func (m *Merged) Status() SourceStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

func (m *Merged) record(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status.Reads++
	if err != nil && (m.status.Err == nil || m.status.Err.Error() != err.Error()) {
		m.status.Reported++
	}
	m.status.Err = err
}

type delivery struct {
	source string
	set    []model.Export
	err    error
	done   bool // Run returned
}

// Run implements Source.
func (m *Merged) Run(ctx context.Context, update func([]model.Export)) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Sources stop before Run returns, so none outlives its caller.
	defer wg.Wait()
	defer cancel()
	ch := make(chan delivery)
	send := func(d delivery) {
		select {
		case ch <- d:
		case <-ctx.Done():
		}
	}
	for name, src := range m.sources {
		wg.Go(func() {
			err := src.Run(ctx, func(set []model.Export) { send(delivery{source: name, set: set}) })
			send(delivery{source: name, err: err, done: true})
		})
	}
	latest := make(map[string][]model.Export, len(m.sources))
	started := false
	for {
		var d delivery
		select {
		case <-ctx.Done():
			return nil
		case d = <-ch:
		}
		_, had := latest[d.source]
		switch {
		case d.done && !had:
			if d.err == nil {
				d.err = errors.New("stopped before its first set")
			}
			return fmt.Errorf("source %s: %w", d.source, d.err)
		case d.done:
			m.log.Error("registry source stopped; its last set stays", zap.String("source", d.source), zap.Error(d.err))
			continue
		}
		latest[d.source] = d.set
		if len(latest) < len(m.sources) {
			continue
		}
		set, err := union(latest)
		if err != nil && !started {
			return err
		}
		if started {
			m.record(err)
		}
		if err != nil {
			m.log.Warn("registry sources conflict; keeping the last set", zap.Error(err))
			continue
		}
		started = true
		update(set)
	}
}

// union joins the sets sorted by name, refusing a name or fqdn that two
// sources both yield: which of them to export would be a guess.
func union(sets map[string][]model.Export) ([]model.Export, error) {
	var out []model.Export
	byName := map[string]string{}
	byFQDN := map[string]string{}
	for _, src := range slices.Sorted(maps.Keys(sets)) {
		for _, e := range sets[src] {
			if other, ok := byName[e.Name]; ok {
				return nil, fmt.Errorf("service %q comes from both source %s and source %s", e.Name, other, src)
			}
			if other, ok := byFQDN[e.FQDN]; ok {
				return nil, fmt.Errorf("fqdn %q comes from both source %s and source %s", e.FQDN, other, src)
			}
			byName[e.Name], byFQDN[e.FQDN] = src, src
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b model.Export) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
