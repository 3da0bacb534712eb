package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/store"
	"github.com/meshfed/meshfed/xds"
)

// RunResult is one system in one mode at one N and M.
type RunResult struct {
	// Kind of gateways: KindSimulated or KindEnvoy.
	Kind     string `json:"kind"`
	System   string `json:"system"`
	Mode     string `json:"mode"`
	Services int    `json:"services"`
	Gateways int    `json:"gateways"`
	// Resources is the number of egress resources each gateway holds.
	Resources int `json:"resources"`

	// HeapPerService is the live heap of the catalog and the system with
	// N services and no gateway, per service; CatalogHeapPerService is the
	// catalog's share (the same for every system).
	HeapPerService        float64 `json:"heapPerServiceBytes"`
	CatalogHeapPerService float64 `json:"catalogHeapPerServiceBytes"`
	// HeapPerGateway is the heap the M connected gateways added, per
	// gateway, and per gateway and resource. It includes the gateways' own
	// memory when they run in process.
	HeapPerGateway            float64 `json:"heapPerGatewayBytes"`
	HeapPerGatewayPerResource float64 `json:"heapPerGatewayPerResourceBytes"`
	HeapIncludesClients       bool    `json:"heapIncludesClients"`

	Cold   *Phase    `json:"cold,omitempty"`
	Single *Workload `json:"single,omitempty"`
	Churn  *Workload `json:"churn,omitempty"`
	Burst  *Workload `json:"burst,omitempty"`
	Storm  *Phase    `json:"storm,omitempty"`

	// Envoy is what real Envoy gateways reported (KindEnvoy).
	Envoy *EnvoyFigures `json:"envoy,omitempty"`

	NACKs int         `json:"nacks"`
	Check CheckResult `json:"check"`
	// Errors are problems that did not stop the run; Failed is the one
	// that did.
	Errors  []string `json:"errors,omitempty"`
	Failed  string   `json:"failed,omitempty"`
	Seconds float64  `json:"seconds"`
}

// Phase is a one-off event: until every gateway was in sync.
type Phase struct {
	Ms float64 `json:"ms"`
	// CPUMs is the control plane process's CPU time in the phase, and
	// GatewaysCPUMs that of the gateways' process.
	CPUMs         float64 `json:"cpuMs"`
	GatewaysCPUMs float64 `json:"gatewaysCpuMs"`
	// WireBytesPerGateway read during the phase.
	WireBytesPerGateway float64 `json:"wireBytesPerGateway"`
	TimedOut            bool    `json:"timedOut,omitempty"`
}

// Workload is a series of changes, each timed until every gateway ACKed a
// state holding it.
type Workload struct {
	Latency Latency `json:"latency"`
	// ByKind splits Latency by kind of change (endpoints, edit, add,
	// remove), ByScope by what the gateways had to take in for it (see
	// Scopes).
	ByKind  map[string]Latency `json:"byKind,omitempty"`
	ByScope map[string]Latency `json:"byScope,omitempty"`
	// CostByScope splits Cost by scope, for workloads that make one change
	// at a time.
	CostByScope map[string]Cost `json:"costByScope,omitempty"`
	Cost        Cost            `json:"cost"`
	// HarnessMs is the time per update the harness spent writing the
	// changes to the catalog (and its bbolt store), which Cost.CPUMs
	// includes; drawing the changes and their expectations is not
	// included.
	HarnessMs float64 `json:"harnessMsPerUpdate"`
	// RatePerSec is the rate the changes were made at.
	RatePerSec float64 `json:"ratePerSec,omitempty"`
	// AllMs is from the first change made until the last one was held by
	// every gateway (burst).
	AllMs float64 `json:"allMs,omitempty"`
}

// env is one run's catalog, system, server and gateways.
type env struct {
	opts  *Options
	sys   system
	cat   *catalog.Catalog
	st    *store.Store
	gen   *generator
	input snapshot.Input
	// held counts the holders of each upstream cluster, as the drawn
	// changes leave them.
	held   holders
	fleet  fleet
	events *collector
	mode   string
	m      int
	res    *RunResult
	// harness accumulates the time spent writing changes to the catalog.
	harness time.Duration
}

func (e *env) partialSotw() bool { return e.mode == ModeSotw && e.res.System == SystemLinear }

func (e *env) errorf(format string, args ...any) {
	e.res.Errors = append(e.res.Errors, fmt.Sprintf(format, args...))
}

func runOne(ctx context.Context, opts *Options, p *pki, prefix, kind, sysName, mode string, n, m int, workloads []string) *RunResult {
	res := &RunResult{Kind: kind, System: sysName, Mode: mode, Services: n, Gateways: m, HeapIncludesClients: opts.InProcessClients}
	start := time.Now()
	err := runEnv(ctx, opts, p, prefix, res, workloads)
	res.Seconds = time.Since(start).Seconds()
	if err != nil {
		res.Failed = err.Error()
		fmt.Fprintf(opts.Progress, "%s: FAILED: %v\n", prefix, err)
	}
	return res
}

func runEnv(parent context.Context, opts *Options, p *pki, prefix string, res *RunResult, workloads []string) (err error) {
	progress := func(format string, args ...any) {
		fmt.Fprintf(opts.Progress, "%s: %s\n", prefix, fmt.Sprintf(format, args...))
	}
	h0 := heap()
	st, closeStore, err := openStore(opts.StoreDir)
	if err != nil {
		return err
	}
	defer closeStore()
	cat, gen, err := loadCatalog(st, opts.Seed, res.Services)
	if err != nil {
		return err
	}
	h1 := heap()

	nodes := nodeIDs(res.Gateways)
	e := &env{opts: opts, cat: cat, st: st, gen: gen, input: p.input(), mode: res.Mode, m: res.Gateways, res: res}
	e.held = newHolders(&e.input, cat.Imports())
	sys, err := newSystem(res.System, systemEnv{catalog: cat, store: st, input: e.input, holdoff: opts.Holdoff, nodes: nodes})
	if err != nil {
		return err
	}
	e.sys = sys
	var wg sync.WaitGroup
	ctx, stop, err := startSystem(parent, sys, &wg)
	if err != nil {
		return err
	}
	defer stop()
	h2 := heap()
	res.HeapPerService = float64(int64(h2)-int64(h0)) / float64(res.Services)
	res.CatalogHeapPerService = float64(int64(h1)-int64(h0)) / float64(res.Services)

	xr, err := startXDS(ctx, &wg, sys.cache(), model.Egress)
	if err != nil {
		return err
	}
	defer xr.close()

	envoys, err := e.startFleet(xr.srv, xr.dir)
	if err != nil {
		return err
	}
	defer closeFleet(e.fleet, "gateways", &err)
	e.events = newCollector(e.fleet.events())
	defer e.events.stop()

	want := e.expected()
	for _, t := range snapshot.Types {
		res.Resources += len(want.Digests[t])
	}
	progress("%d services (%d egress resources) loaded; heap %.0f B/service", res.Services, res.Resources, res.HeapPerService)

	if err := e.coldStart(ctx, want, xr.lis, nodes, envoys, progress); err != nil {
		return err
	}
	e.runWorkloads(workloads, progress)
	return e.finalCheck(ctx, envoys, progress)
}

// startSystem starts sys; stop ends it, once the goroutines of wg (the
// server's) also ended.
func startSystem(parent context.Context, sys system, wg *sync.WaitGroup) (ctx context.Context, stop func(), err error) {
	ctx, cancel := context.WithCancel(parent)
	stop = func() {
		cancel()
		wg.Wait()
		sys.wait()
	}
	if err := sys.start(ctx); err != nil {
		stop()
		return nil, nil, err
	}
	return ctx, stop, nil
}

// envoyLogs is the prefix of the log files of a run's Envoys in dir (see
// newEnvoyFleet), which it makes: dir + run; none without dir.
func envoyLogs(dir, run string) (string, error) {
	if dir == "" {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(dir, run), nil
}

// openStore opens a store in a new directory under dir; closeStore closes
// it and removes the directory.
func openStore(dir string) (st *store.Store, closeStore func(), err error) {
	d, err := os.MkdirTemp(dir, "meshfed-bench-")
	if err != nil {
		return nil, nil, err
	}
	if st, err = store.Open(filepath.Join(d, "meshfed.db")); err != nil {
		_ = os.RemoveAll(d)
		return nil, nil, err
	}
	return st, func() {
		_ = st.Close()
		_ = os.RemoveAll(d)
	}, nil
}

// nodeIDs are the node ids of m egress gateways.
func nodeIDs(m int) []string {
	nodes := make([]string, m)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("egress-%03d", i)
	}
	return nodes
}

// xdsRun is the xDS server of a run, on a Unix socket (the agent's
// default: gateways on plaintext TCP would be served no SVID key) in a
// directory of its own, which real Envoys keep their files in.
type xdsRun struct {
	srv *xds.Server
	lis net.Listener
	dir string
	// written counts the bytes written to the gateways' connections.
	written *atomic.Int64
}

// startXDS serves c to the gateways, all of role, until ctx ends.
func startXDS(ctx context.Context, wg *sync.WaitGroup, c gcache.Cache, role model.Role) (_ *xdsRun, err error) {
	x := &xdsRun{written: &atomic.Int64{}}
	if x.dir, err = os.MkdirTemp("", "meshfed-bench-xds-"); err != nil {
		return nil, err
	}
	if x.srv, err = xds.New(xds.Config{Cache: c, NodeRole: servesAs(role),
		MaxRecvMsgSize: config.DefaultMaxRequestBytes, MaxConcurrentStreams: config.DefaultMaxStreamsPerConnection,
		MaxStreamsPerNode: config.DefaultMaxStreamsPerNode, MaxStreamsPerIdentity: config.DefaultMaxStreamsPerIdentity,
		MaxStreams: config.DefaultMaxStreams, FirstRequestTimeout: config.DefaultFirstRequestTimeout,
	}); err == nil {
		x.lis, err = xds.Listen("unix://" + filepath.Join(x.dir, "xds.sock"))
	}
	if err != nil {
		x.close()
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = x.srv.Serve(ctx, countingListener{Listener: x.lis, written: x.written})
	}()
	return x, nil
}

// close removes the directory, once the server stopped.
func (x *xdsRun) close() { _ = os.RemoveAll(x.dir) }

// closeFleet closes f, and makes its error *err unless there is one.
func closeFleet(f fleet, what string, err *error) {
	if cerr := f.close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("%s: %w", what, cerr)
	}
}

// countingListener counts the bytes written to the connections it
// accepts.
type countingListener struct {
	net.Listener
	written *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, written: l.written}, nil
}

// loadCatalog fills the catalog of a run with n services.
func loadCatalog(st *store.Store, seed uint64, n int) (*catalog.Catalog, *generator, error) {
	cat := catalog.New(st, zap.NewNop())
	if err := cat.SetPeers(catalogPeers()); err != nil {
		return nil, nil, err
	}
	gen := newGenerator(seed, cat)
	if err := load(st, cat, gen, n); err != nil {
		return nil, nil, err
	}
	return cat, gen, nil
}

// startFleet starts the gateways of the run: real Envoys, or simulated
// ones in this process or a child.
func (e *env) startFleet(srv *xds.Server, sockDir string) (envoys *envoyFleet, err error) {
	res, opts := e.res, e.opts
	switch {
	case res.Kind == KindEnvoy:
		keep, err := envoyLogs(opts.EnvoyLogs, fmt.Sprintf("%s-%s-%d-%d-", res.System, res.Mode, res.Services, res.Gateways))
		if err != nil {
			return nil, err
		}
		if envoys, err = newEnvoyFleet(srv, sockDir, keep, "egress.yaml"); err != nil {
			return nil, err
		}
		e.fleet = envoys
		res.HeapIncludesClients = false
		res.Envoy = &EnvoyFigures{}
	case opts.InProcessClients:
		e.fleet = newLocalFleet()
	default:
		if e.fleet, err = startProcessFleet(); err != nil {
			return nil, err
		}
	}
	return envoys, nil
}

// coldStart connects every gateway at once and measures until all synced.
func (e *env) coldStart(ctx context.Context, want checkWant, lis net.Listener, nodes []string, envoys *envoyFleet, progress func(string, ...any)) error {
	res, opts := e.res, e.opts
	// Cold start: every gateway connects at once.
	counts := map[string]int{}
	for t, ds := range want.Digests {
		counts[t] = len(ds)
	}
	if err := e.fleet.expectSync(counts); err != nil {
		return err
	}
	hc := heap()
	g0 := e.gateways()
	u0 := readUsage()
	t0 := time.Now()
	at, err := connectAll(e.fleet, e.events, fleetConfig{Addr: xds.Target(lis.Addr()), Delta: res.Mode == ModeDelta, PartialSotw: e.partialSotw(), Nodes: nodes}, opts.WaitTimeout)
	if err != nil {
		return err
	}
	res.Cold = e.phase(at.Sub(t0), u0, g0)
	h3 := heap()
	res.HeapPerGateway = float64(int64(h3)-int64(hc)) / float64(res.Gateways)
	res.HeapPerGatewayPerResource = res.HeapPerGateway / float64(max(res.Resources, 1))
	progress("cold start of %d gateways %.0f ms; heap %.0f B/gateway (%.1f B/resource)", res.Gateways, res.Cold.Ms, res.HeapPerGateway, res.HeapPerGatewayPerResource)
	if envoys != nil {
		if err := envoys.figures(ctx, res.Envoy); err != nil {
			return err
		}
		res.Envoy.ColdRSSBytes = res.Envoy.EndRSSBytes
		res.Envoy.ColdInitFetchTimeout = res.Envoy.InitFetchTimeout
		res.Envoy.ColdHeapBytes = res.Envoy.HeapBytes
		progress("envoy heap %.0f MB (%.1f KB/service), RSS %.0f MB (largest of %d); %d init_fetch_timeout; control plane RSS %.0f MB",
			float64(res.Envoy.ColdHeapBytes)/1e6, float64(res.Envoy.ColdHeapBytes)/1024/float64(res.Services), float64(res.Envoy.ColdRSSBytes)/1e6,
			res.Gateways, res.Envoy.ColdInitFetchTimeout, float64(res.Envoy.ControlPlaneRSSBytes)/1e6)
	}
	return nil
}

// connectAll connects every gateway of f at once, and returns when the
// last one held the counts of its expectSync.
func connectAll(f fleet, events *collector, cfg fleetConfig, timeout time.Duration) (time.Time, error) {
	if err := f.connect(cfg); err != nil {
		return time.Time{}, err
	}
	at, ok := events.waitSync(timeout)
	if !ok {
		if failed := events.failures(); len(failed) > 0 {
			return at, fmt.Errorf("cold start: %d gateway streams failed, first: %s", len(failed), failed[0])
		}
		return at, fmt.Errorf("cold start: the gateways did not all sync within %s", timeout)
	}
	return at, nil
}

// runWorkloads runs the workloads asked for, unless gateway streams failed.
func (e *env) runWorkloads(workloads []string, progress func(string, ...any)) {
	res := e.res
	has := func(w string) bool {
		if !slices.Contains(workloads, w) {
			return false
		}
		if f := e.events.failures(); len(f) > 0 {
			e.errorf("%s: not run: %d gateway streams failed", w, len(f))
			return false
		}
		return true
	}
	if has(WorkloadSingle) {
		res.Single = e.single()
		progress("single change: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d changes); %.2f ms CPU, %.0f allocs, %.0f B/gateway per update",
			res.Single.Latency.P50, res.Single.Latency.P99, res.Single.Latency.Max, res.Single.Latency.Count,
			res.Single.Cost.CPUMs, res.Single.Cost.Allocs, res.Single.Cost.WireBytes)
	}
	if has(WorkloadChurn) {
		res.Churn = e.churn()
		progress("churn at %.0f/s: p50 %.1f ms, p99 %.1f ms, max %.1f ms; %.2f ms CPU per update",
			res.Churn.RatePerSec, res.Churn.Latency.P50, res.Churn.Latency.P99, res.Churn.Latency.Max, res.Churn.Cost.CPUMs)
	}
	if has(WorkloadBurst) {
		res.Burst = e.burst()
		progress("burst of %d changes: all held after %.0f ms; p99 %.1f ms", res.Burst.Latency.Count, res.Burst.AllMs, res.Burst.Latency.P99)
	}
	if has(WorkloadStorm) {
		if res.Storm = e.storm(); res.Storm != nil && !res.Storm.TimedOut {
			progress("reconnect storm of %d gateways: %.0f ms, %.0f B/gateway", res.Gateways, res.Storm.Ms, res.Storm.WireBytesPerGateway)
		} else {
			progress("reconnect storm of %d gateways: FAILED: %s", res.Gateways, res.Errors[len(res.Errors)-1])
		}
	}
}

// finalCheck checks that every gateway holds exactly what the system
// serves, which is the translation of the catalog.
func (e *env) finalCheck(ctx context.Context, envoys *envoyFleet, progress func(string, ...any)) error {
	res := e.res
	st2, err := e.fleet.stats()
	if err != nil {
		return err
	}
	res.NACKs = st2.NACKs
	for _, s := range st2.StreamErrors {
		e.errorf("stream: %s", s)
	}
	if res.Check, err = e.settled(); err != nil {
		return err
	}
	verdict := "ok"
	if !res.Check.OK() {
		verdict = fmt.Sprintf("%d of %d gateways differ: %v", res.Check.Mismatched, res.Check.Gateways, res.Check.Problems)
	}
	progress("%d NACKs; final state check %s", res.NACKs, verdict)
	if envoys != nil {
		problem, err := envoys.endFigures(ctx, res.Envoy, res.Check.OK())
		if err != nil {
			return err
		}
		if problem != "" {
			e.errorf("%s", problem)
		}
		progress("%s", res.Envoy.summary())
	}
	return nil
}

// load puts the first n services in the store, as a peer's full catalog
// would have, and restores the catalog from it as an agent does on start.
func load(st *store.Store, cat *catalog.Catalog, gen *generator, n int) error {
	recs, err := gen.initial(n)
	if err != nil {
		return err
	}
	if err := st.PutImports(recs); err != nil {
		return err
	}
	return cat.Restore(recs)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// phase is a Phase that took d, since u0 and g0.
func (e *env) phase(d time.Duration, u0 usage, g0 fleetStats) *Phase {
	g1 := e.gateways()
	return &Phase{
		Ms:                  ms(d),
		CPUMs:               ms(readUsage().cpu - u0.cpu),
		GatewaysCPUMs:       g1.CPUMs - g0.CPUMs,
		WireBytesPerGateway: float64(g1.WireBytes-g0.WireBytes) / float64(e.m),
	}
}

// gateways returns the gateways' counters.
func (e *env) gateways() fleetStats {
	s, err := e.fleet.stats()
	if err != nil {
		e.errorf("gateway stats: %v", err)
	}
	return s
}

// settled checks the gateways against what the system serves until they
// agree, or WaitTimeout passes: the workloads wait for the types a change
// touched, and a system that sends other types anew (SnapshotCache bumps
// every type's version) may still have those responses in flight.
func (e *env) settled() (CheckResult, error) { return settle(e.fleet, e.expected, e.opts.WaitTimeout) }

// settle checks f against want until they agree, or timeout passes.
func settle(f fleet, want func() checkWant, timeout time.Duration) (CheckResult, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, err := f.check(want())
		if err != nil || got.OK() || time.Now().After(deadline) {
			return got, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expected is what every gateway must hold: the translation of the whole
// catalog with the system's ports, and the versions the system serves.
func (e *env) expected() checkWant {
	in := e.input
	in.Imports = e.cat.Imports()
	in.EgressPorts = e.sys.ports()
	built := snapshot.Build(&in).ByRole[model.Egress]
	w := checkWant{Digests: map[string]map[string]uint64{}, PartialSotw: e.partialSotw()}
	delta := e.mode == ModeDelta
	for _, t := range snapshot.Types {
		w.Digests[t] = digests(built[t])
		versions, sotw := e.sys.served(t, delta)
		if delta && versions != nil {
			if w.Versions == nil {
				w.Versions = map[string]map[string]string{}
			}
			w.Versions[t] = versions
		}
		if !delta && sotw != "" {
			if w.Sotw == nil {
				w.Sotw = map[string]string{}
			}
			w.Sotw[t] = sotw
		}
	}
	return w
}

// draw draws changes and their expectations.
func (e *env) draw(n int, kind func() changeKind) ([]*change, []Expect, error) {
	var changes []*change
	var exps []Expect
	for range n {
		c, err := e.gen.make(kind())
		if err != nil {
			return changes, exps, err
		}
		ce := expectations(&e.input, c, e.sys.port, e.partialSotw(), e.held)
		if len(ce) == 0 {
			return changes, exps, fmt.Errorf("change %d (%s of %s) changes nothing a gateway holds", c.id, c.kind, c.rid)
		}
		c.scope = scopeOf(ce)
		changes = append(changes, c)
		exps = append(exps, ce...)
	}
	return changes, exps, nil
}

// commit makes the change in the catalog and returns when it was made.
func (e *env) commit(c *change) (time.Time, error) {
	start := time.Now()
	err := apply(e.cat, c)
	now := time.Now()
	e.harness += now.Sub(start)
	return now, err
}

type timed struct {
	c  *change
	t0 time.Time
	// spent is what the change alone cost, when measured alone.
	spent *spent
}

// spent is what this process spent on one change, from its catalog write
// until every gateway held it, and what the gateways did.
type spent struct {
	cpu         time.Duration
	allocs      uint64
	wire        int64
	gatewaysCPU float64 // ms
}

// finish waits for the changes and summarizes them.
// spentCost is the cost of changes measured one by one, in all and by
// scope.
func (e *env) spentCost(changes []timed) (Cost, map[string]Cost) {
	var total spent
	byScope := map[string]*spent{}
	counts := map[string]int{}
	for _, tc := range changes {
		sp := byScope[tc.c.scope]
		if sp == nil {
			sp = &spent{}
			byScope[tc.c.scope] = sp
		}
		for _, acc := range []*spent{sp, &total} {
			acc.cpu += tc.spent.cpu
			acc.allocs += tc.spent.allocs
			acc.wire += tc.spent.wire
			acc.gatewaysCPU += tc.spent.gatewaysCPU
		}
		counts[tc.c.scope]++
	}
	out := map[string]Cost{}
	for sc, sp := range byScope {
		out[sc] = sp.cost(counts[sc], e.m)
	}
	return total.cost(len(changes), e.m), out
}

func (e *env) finish(changes []timed, before usage, g0 fleetStats) *Workload {
	ids := make([]uint64, len(changes))
	for i, tc := range changes {
		ids[i] = tc.c.id
	}
	done := e.events.wait(ids, e.opts.WaitTimeout)
	after := readUsage()
	w := &Workload{ByKind: map[string]Latency{}, ByScope: map[string]Latency{}}
	var all []time.Duration
	byKind := map[changeKind][]time.Duration{}
	timedOut := map[changeKind]int{}
	byScope := map[string][]time.Duration{}
	scopeTimedOut := map[string]int{}
	var first, last time.Time
	for _, tc := range changes {
		if first.IsZero() || tc.t0.Before(first) {
			first = tc.t0
		}
		at, ok := done[tc.c.id]
		if !ok {
			timedOut[tc.c.kind]++
			scopeTimedOut[tc.c.scope]++
			continue
		}
		if at.After(last) {
			last = at
		}
		d := max(at.Sub(tc.t0), 0)
		all = append(all, d)
		byKind[tc.c.kind] = append(byKind[tc.c.kind], d)
		byScope[tc.c.scope] = append(byScope[tc.c.scope], d)
	}
	n := 0
	for _, k := range timedOut {
		n += k
	}
	if f := e.events.failures(); n > 0 && len(f) > 0 {
		e.errorf("%d of %d changes not held by every gateway: %d gateway streams failed, first: %s", n, len(changes), len(f), f[0])
	} else if n > 0 {
		e.errorf("%d of %d changes not held by every gateway within %s", n, len(changes), e.opts.WaitTimeout)
	}
	w.Latency = summarize(all, n)
	for k := kindEndpoints; k <= kindRemove; k++ {
		if len(byKind[k]) > 0 || timedOut[k] > 0 {
			w.ByKind[k.String()] = summarize(byKind[k], timedOut[k])
		}
	}
	for _, sc := range Scopes {
		if len(byScope[sc]) > 0 || scopeTimedOut[sc] > 0 {
			w.ByScope[sc] = summarize(byScope[sc], scopeTimedOut[sc])
		}
	}
	w.Cost = cost(before, after, len(changes), g0, e.gateways(), e.m)
	if len(changes) > 0 && changes[0].spent != nil {
		// Measured change by change: without the harness's drawing and
		// registering of expectations, and split by scope.
		w.Cost, w.CostByScope = e.spentCost(changes)
	}
	w.HarnessMs = ms(e.harness) / float64(max(len(changes), 1))
	if !last.IsZero() {
		w.AllMs = ms(last.Sub(first))
	}
	return w
}

// single makes one change at a time, each measured alone.
func (e *env) single() *Workload {
	e.harness = 0
	start := time.Now()
	var changes []timed
	// Real Envoys measure at least 8 changes: a change that makes one wait
	// for its initial fetch timeout would otherwise leave only 3.
	least := 3
	if e.res.Kind == KindEnvoy {
		least = 8
	}
	for i := 0; i < e.opts.SingleChanges && (i < least || time.Since(start) < e.opts.SingleBudget); i++ {
		cs, exps, err := e.draw(1, e.gen.mixed)
		if err == nil {
			err = e.fleet.expect(exps)
		}
		if err != nil {
			e.errorf("single: %v", err)
			break
		}
		c := cs[0]
		g0 := e.gateways()
		u0 := readUsage()
		t0, err := e.commit(c)
		if err != nil {
			e.errorf("single: %v", err)
			break
		}
		_, ok := e.events.wait([]uint64{c.id}, e.opts.WaitTimeout)[c.id]
		u1 := readUsage()
		g1 := e.gateways()
		changes = append(changes, timed{c: c, t0: t0, spent: &spent{
			cpu: u1.cpu - u0.cpu, allocs: u1.allocs - u0.allocs,
			wire: g1.WireBytes - g0.WireBytes, gatewaysCPU: g1.CPUMs - g0.CPUMs,
		}})
		if !ok {
			break // finish reports it
		}
	}
	return e.finish(changes, usage{}, fleetStats{})
}

// paced registers the expectations of n changes drawn by kind, then makes
// the changes evenly spread over d, and waits for them.
func (e *env) paced(what string, n int, d time.Duration) *Workload {
	e.harness = 0
	changes, exps, err := e.draw(n, e.gen.mixed)
	if err == nil {
		err = e.fleet.expect(exps)
	}
	if err != nil {
		e.errorf("%s: %v", what, err)
		return &Workload{}
	}
	g0 := e.gateways()
	before := readUsage()
	interval := d / time.Duration(max(len(changes), 1))
	start := time.Now()
	var made []timed
	for i, c := range changes {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		t0, err := e.commit(c)
		if err != nil {
			e.errorf("%s: %v", what, err)
			break
		}
		made = append(made, timed{c: c, t0: t0})
	}
	elapsed := max(time.Since(start), d)
	w := e.finish(made, before, g0)
	w.RatePerSec = float64(len(made)) / elapsed.Seconds()
	return w
}

func (e *env) churn() *Workload {
	n := max(1, int(e.opts.ChurnRate*e.opts.ChurnDuration.Seconds()))
	w := e.paced("churn", n, e.opts.ChurnDuration)
	w.AllMs = 0
	return w
}

// burst changes BurstFraction of the services within one second.
func (e *env) burst() *Workload {
	return e.paced("burst", max(1, int(e.opts.BurstFraction*float64(e.res.Services))), time.Second)
}

// storm disconnects every gateway, makes one change while they are gone,
// and reconnects them all at once.
func (e *env) storm() *Phase {
	if err := e.fleet.disconnect(); err != nil {
		e.errorf("storm: %v", err)
		return nil
	}
	cs, exps, err := e.draw(1, func() changeKind { return kindEndpoints })
	if err == nil {
		err = e.fleet.expect(exps)
	}
	if err != nil {
		e.errorf("storm: %v", err)
		return nil
	}
	c := cs[0]
	applied := e.sys.applied()
	if _, err := e.commit(c); err != nil {
		e.errorf("storm: %v", err)
		return nil
	}
	// Let the system serve the change first: the storm is about the
	// reconnections, not about translating the change.
	for deadline := time.Now().Add(e.opts.WaitTimeout); e.sys.applied() == applied && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	g0 := e.gateways()
	u0 := readUsage()
	t0 := time.Now()
	if err := e.fleet.reconnect(); err != nil {
		e.errorf("storm: %v", err)
		return nil
	}
	at, ok := e.events.wait([]uint64{c.id}, e.opts.WaitTimeout)[c.id]
	p := e.phase(at.Sub(t0), u0, g0)
	if !ok {
		p.Ms, p.TimedOut = ms(time.Since(t0)), true
		if f := e.events.failures(); len(f) > 0 {
			e.errorf("storm: %d gateway streams failed, first: %s", len(f), f[0])
		} else {
			e.errorf("storm: not every gateway resynced within %s", e.opts.WaitTimeout)
		}
	}
	return p
}

// collector gathers the fleet's events. Once a gateway's stream failed, no
// wait waits any longer: that gateway will hold nothing more.
type collector struct {
	mu     sync.Mutex
	done   map[uint64]time.Time
	synced []time.Time
	failed []string
	notify chan struct{}
	quit   chan struct{}
	ended  chan struct{}
}

func newCollector(ev <-chan fleetEvent) *collector {
	c := &collector{done: map[uint64]time.Time{}, notify: make(chan struct{}, 1), quit: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(c.ended)
		for {
			select {
			case <-c.quit:
				return
			case e := <-ev:
				c.mu.Lock()
				switch {
				case e.Err != "":
					c.failed = append(c.failed, e.Err)
				case e.Change == 0:
					c.synced = append(c.synced, e.At)
				default:
					c.done[e.Change] = e.At
				}
				c.mu.Unlock()
				select {
				case c.notify <- struct{}{}:
				default:
				}
			}
		}
	}()
	return c
}

// failures returns the streams that failed.
func (c *collector) failures() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.failed)
}

func (c *collector) stop() {
	close(c.quit)
	<-c.ended
}

// wait returns when each of ids was held by every gateway, with those that
// were within timeout of the last one reported, or when a stream failed.
func (c *collector) wait(ids []uint64, timeout time.Duration) map[uint64]time.Time {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		got := make(map[uint64]time.Time, len(ids))
		for _, id := range ids {
			if at, ok := c.done[id]; ok {
				got[id] = at
			}
		}
		failed := len(c.failed) > 0
		c.mu.Unlock()
		if len(got) == len(ids) || failed {
			return got
		}
		select {
		case <-c.notify:
			// Progress: the timeout counts from the last one.
			if !timer.Stop() {
				<-timer.C
			}
			timer.Reset(timeout)
		case <-timer.C:
			return got
		}
	}
}

func (c *collector) waitSync(timeout time.Duration) (time.Time, bool) {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		if len(c.synced) > 0 {
			at := c.synced[0]
			c.synced = c.synced[1:]
			c.mu.Unlock()
			return at, true
		}
		failed := len(c.failed) > 0
		c.mu.Unlock()
		if failed {
			return time.Time{}, false
		}
		select {
		case <-c.notify:
		case <-deadline:
			return time.Time{}, false
		}
	}
}
