package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
)

// checksProbe is a filter no check passes: the list of checks comes back
// empty, with the index of the checks, and wakes with every change of
// one. Each change is then read in full once, where a blocking query on
// the full list would send it all again at every wait's end.
const checksProbe = `CheckID == ""`

// indexes are where the two watches start.
type indexes struct{ catalog, checks uint64 }

// service is what was last read of a candidate service.
type service struct {
	entries []*api.ServiceEntry // its passing instances
	// connect are its Connect proxies and native instances, whatever
	// their health; read while an instance is selected. A terminating
	// gateway, which Consul lists there too, does not make a service one
	// of Connect's: it fronts services that are not.
	connect []*api.ServiceEntry
	proxies []string // the names of those proxies
	index   uint64   // of the read
}

type checkKey struct{ node, id string }

type checkSeen struct {
	service string // "" for a node's check
	modify  uint64
}

// sourceRun is the state of one Run.
type sourceRun struct {
	src     *Source
	changed chan struct{} // a token when the set may have changed
	reset   chan struct{} // a token when an index went backwards
	queue   *queue
	retries *retries

	mu       sync.Mutex
	services map[string]*service // by candidate name
	checks   map[checkKey]checkSeen
	fronts   map[string]map[string]bool // proxy service name → the candidates it fronts
	stale    map[string]bool            // services to build again
	outcomes map[string]outcome         // what each service gave the last set
	kept     map[string]model.Export    // last valid export of each service
	built    bool                       // the first set was built
}

func newRun(s *Source) *sourceRun {
	return &sourceRun{
		src: s, changed: make(chan struct{}, 1), reset: make(chan struct{}, 1), queue: newQueue(), retries: newRetries(),
		services: map[string]*service{}, checks: map[checkKey]checkSeen{}, fronts: map[string]map[string]bool{},
		stale: map[string]bool{}, outcomes: map[string]outcome{}, kept: map[string]model.Export{},
	}
}

// catalogQuery follows the list of services. The list does not tell which
// registration changed: every candidate is read again.
func (r *sourceRun) catalogQuery(q *api.QueryOptions) (func(context.Context) error, *api.QueryMeta, error) {
	list, meta, err := r.src.client.Catalog().Services(q)
	return func(context.Context) error {
		r.queue.add(false, r.applyList(list)...)
		return nil
	}, meta, err
}

// checksQuery follows the checks by their probe, and reads them in full
// when it moved.
func (r *sourceRun) checksQuery(q *api.QueryOptions) (func(context.Context) error, *api.QueryMeta, error) {
	q.Filter = checksProbe
	_, meta, err := r.src.client.Health().State(api.HealthAny, q)
	return func(ctx context.Context) error {
		checks, _, err := r.src.client.Health().State(api.HealthAny, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		names, sweep := r.applyChecks(checks)
		r.queue.add(!sweep, names...)
		return nil
	}, meta, err
}

// load reads the first state without blocking, so that an unreachable
// Consul or a refused token is Run's error rather than a log line. The
// probe of the checks comes before the checks: what changes after it is
// seen.
func (r *sourceRun) load(ctx context.Context) (indexes, error) {
	q := func() *api.QueryOptions { return (&api.QueryOptions{}).WithContext(ctx) }
	var at indexes
	list, meta, err := r.src.client.Catalog().Services(q())
	if err != nil {
		return at, fmt.Errorf("consul: listing services: %w", untrusted.Error(err))
	}
	at.catalog = meta.LastIndex
	probe := q()
	probe.Filter = checksProbe
	if _, meta, err = r.src.client.Health().State(api.HealthAny, probe); err == nil {
		at.checks = meta.LastIndex
		var checks api.HealthChecks
		if checks, _, err = r.src.client.Health().State(api.HealthAny, q()); err == nil {
			r.applyChecks(checks)
		}
	}
	if err != nil {
		return at, fmt.Errorf("consul: listing the health checks: %w", untrusted.Error(err))
	}
	return at, r.readAll(ctx, r.applyList(list))
}

// readAll reads names with every reader, and stops at the first error.
func (r *sourceRun) readAll(ctx context.Context, names []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan string)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range readers {
		wg.Go(func() {
			for name := range next {
				if err := r.read(ctx, name); err != nil {
					once.Do(func() {
						first = fmt.Errorf("consul: reading the health of service %s: %w", untrusted.Quote(name), err)
						cancel()
					})
				}
			}
		})
	}
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		next <- name
	}
	close(next)
	wg.Wait()
	return first
}

// start runs the watches, the readers and the retries until gen is done.
func (r *sourceRun) start(gen context.Context, wg *sync.WaitGroup, at indexes) {
	// A token left by the generation before is no news.
	select {
	case <-r.reset:
	default:
	}
	log := r.src.log
	wg.Go(func() {
		r.ended(follow(gen, log, "catalog services", at.catalog, minGap, r.catalogQuery, r.src.reporter("catalog services")))
	})
	wg.Go(func() {
		r.ended(follow(gen, log, "health checks", at.checks, checksGap, r.checksQuery, r.src.reporter("health checks")))
	})
	for range readers {
		wg.Go(func() { r.readLoop(gen) })
	}
	wg.Go(func() { r.retries.run(gen, func(names ...string) { r.queue.add(false, names...) }) })
}

func (r *sourceRun) ended(err error) {
	var back indexBackwards
	if errors.As(err, &back) {
		r.backwards(back)
	}
}

// backwards ends the generation: every index held is meaningless.
func (r *sourceRun) backwards(e indexBackwards) {
	r.src.log.Warn("consul's index went backwards (it lost its data, or another Consul answers): every query starts over from 0",
		zap.String("query", e.query), zap.Uint64("from", e.from), zap.Uint64("to", e.to))
	select {
	case r.reset <- struct{}{}:
	default:
	}
}

// forget drops every index, for the next generation to start from 0;
// what was read stays until it is read again.
func (r *sourceRun) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.services {
		s.index = 0
	}
	r.checks = map[checkKey]checkSeen{}
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

// applyList makes the candidates those of list, and returns them.
func (r *sourceRun) applyList(list map[string][]string) []string {
	want := r.candidates(list)
	r.mu.Lock()
	keep := make(map[string]bool, len(want))
	for _, name := range want {
		keep[name] = true
		if r.services[name] == nil {
			r.services[name] = &service{}
		}
	}
	for name, s := range r.services {
		if !keep[name] {
			r.setProxies(name, s, nil)
			delete(r.services, name)
			r.stale[name] = true
			r.retries.done(name)
			r.src.reporter("health of service " + untrusted.Quote(name))(nil)
		}
	}
	r.mu.Unlock()
	r.signal()
	return want
}

// applyChecks records the checks, and returns the candidates whose checks
// changed since the last answer, or every candidate (sweep) when a node's
// check did: it holds for every service on the node.
func (r *sourceRun) applyChecks(checks api.HealthChecks) (names []string, sweep bool) {
	next := make(map[checkKey]checkSeen, len(checks))
	marked := map[string]bool{}
	mark := func(s checkSeen) {
		if s.service == "" {
			sweep = true
		}
		marked[s.service] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range checks {
		k, seen := checkKey{c.Node, c.CheckID}, checkSeen{service: c.ServiceName, modify: c.ModifyIndex}
		next[k] = seen
		// The modify index, not the status: a check that failed and
		// passed again between two answers may have been read failing.
		if old, ok := r.checks[k]; !ok || old != seen {
			mark(seen)
			if ok {
				mark(old)
			}
		}
	}
	for k, old := range r.checks {
		if _, ok := next[k]; !ok {
			mark(old)
		}
	}
	r.checks = next
	if sweep {
		return slices.Sorted(maps.Keys(r.services)), true
	}
	for name := range marked {
		if r.services[name] != nil {
			names = append(names, name)
		}
		for front := range r.fronts[name] {
			names = append(names, front)
		}
	}
	return names, false
}

// read reads one service: its passing instances and, when one is
// selected, its Connect proxies and native instances.
func (r *sourceRun) read(ctx context.Context, name string) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	entries, meta, err := r.src.client.Health().Service(name, "", true, q)
	if err != nil {
		return untrusted.Error(err)
	}
	var connect []*api.ServiceEntry
	if slices.ContainsFunc(entries, r.src.sel.instance) {
		// Whatever their health: a service with sidecars is reached
		// through them, or not at all.
		if connect, _, err = r.src.client.Health().Connect(name, "", false, q); err != nil {
			return fmt.Errorf("its Connect proxies: %w", untrusted.Error(err))
		}
		connect = slices.DeleteFunc(connect, func(en *api.ServiceEntry) bool { return !connectInstance(en) })
	}
	r.store(name, entries, connect, meta.LastIndex)
	return nil
}

func (r *sourceRun) store(name string, entries, connect []*api.ServiceEntry, index uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.services[name]
	if s == nil {
		return // no longer a candidate
	}
	if index < s.index {
		r.backwards(indexBackwards{query: "health of service " + untrusted.Quote(name), from: s.index, to: index})
		return
	}
	r.src.log.Debug("consul service read", zap.String("service", untrusted.Message(name)), zap.Int("passing", len(entries)), zap.Int("connect", len(connect)))
	s.entries, s.connect, s.index = entries, connect, index
	var proxies []string
	for _, en := range connect {
		if en.Service != nil && en.Service.Kind == api.ServiceKindConnectProxy && !slices.Contains(proxies, en.Service.Service) {
			proxies = append(proxies, en.Service.Service)
		}
	}
	r.setProxies(name, s, proxies)
	r.stale[name] = true
	r.signal()
}

// setProxies records which proxies front a candidate, so that a change
// of their checks reads it again.
func (r *sourceRun) setProxies(name string, s *service, proxies []string) {
	for _, p := range s.proxies {
		delete(r.fronts[p], name)
		if len(r.fronts[p]) == 0 {
			delete(r.fronts, p)
		}
	}
	s.proxies = proxies
	for _, p := range proxies {
		if r.fronts[p] == nil {
			r.fronts[p] = map[string]bool{}
		}
		r.fronts[p][name] = true
	}
}

// readLoop reads what is queued until gen is done. A failed read keeps
// the service's last state, and is retried with a backoff.
func (r *sourceRun) readLoop(gen context.Context) {
	for {
		name, ok := r.queue.next(gen)
		if !ok {
			return
		}
		err := r.read(gen, name)
		if gen.Err() != nil {
			r.queue.add(true, name) // for the next generation
			return
		}
		what := "health of service " + untrusted.Quote(name)
		report := r.src.reporter(what)
		if err == nil {
			r.retries.done(name)
			if report(nil) {
				r.src.log.Info("consul query works again", zap.String("query", what))
			}
			continue
		}
		r.mu.Lock()
		candidate := r.services[name] != nil
		r.mu.Unlock()
		if !candidate {
			continue
		}
		d := r.retries.failed(name)
		fresh := report(fmt.Errorf("consul query %s: %w", what, err))
		logAt(r.src.log, fresh)("consul query failed; the last result stays", zap.String("query", what), zap.Duration("retryIn", d), zap.Error(err))
	}
}

func (r *sourceRun) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}
