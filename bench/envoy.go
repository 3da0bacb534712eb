package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	envoyconfigs "github.com/meshfed/meshfed/envoy-configs"
	"github.com/meshfed/meshfed/envoyrun"
	"github.com/meshfed/meshfed/xds"
)

// The kinds of gateways a plan runs.
const (
	// KindSimulated gateways are xds/adsclient clients in a child process.
	KindSimulated = "sim"
	// KindEnvoy gateways are real Envoy processes, from the egress
	// bootstrap of envoy-configs.
	KindEnvoy = "envoy"
)

// envoyWorkloads are the workloads a real-Envoy run can time: a change
// counts as applied by an Envoy when it ACKed the first response of each
// type the change touches sent after the change was made, which holds when
// changes are made one at a time.
var envoyWorkloads = []string{WorkloadCold, WorkloadSingle}

// EnvoyFigures are what the Envoys of a run reported, and the control
// plane's memory beside them.
type EnvoyFigures struct {
	Version string `json:"version,omitempty"`
	// RSSBytes of each Envoy after the cold start and at the end of the
	// run, the largest of the M.
	ColdRSSBytes uint64 `json:"coldRssBytes"`
	EndRSSBytes  uint64 `json:"endRssBytes"`
	// ControlPlaneRSSBytes is the bench process's resident memory at the
	// end of the run (catalog, system and server), after returning freed
	// memory to the system.
	ControlPlaneRSSBytes uint64 `json:"controlPlaneRssBytes"`
	// UpdateRejected and InitFetchTimeout are the sums over every Envoy
	// and every xDS subscription (cds, lds, eds, rds, sds) of Envoy's own
	// counters; both should be 0.
	UpdateRejected   uint64 `json:"updateRejected"`
	InitFetchTimeout uint64 `json:"initFetchTimeout"`
	// ColdInitFetchTimeout is InitFetchTimeout after the cold start.
	ColdInitFetchTimeout uint64 `json:"coldInitFetchTimeout"`
	// Overloaded counts the Envoys whose overload manager, at the end of
	// the run, refuses new requests (the bootstrap's
	// stop_accepting_requests, on its fixed heap limit); HeapBytes is the
	// largest heap allocated (server.memory_allocated, read live from
	// admin /memory: the gauge is refreshed every stats flush only).
	Overloaded int    `json:"overloaded"`
	HeapBytes  uint64 `json:"heapBytes"`
	// ColdHeapBytes is HeapBytes after the cold start: the largest Envoy's
	// heap once every Envoy held every resource, the figure of Envoy's
	// memory per service.
	ColdHeapBytes uint64 `json:"coldHeapBytes"`
	// CDSUpdates and LDSUpdates are Envoy's cluster_manager.cds and
	// listener_manager.lds update_success counters, summed over the
	// Envoys, since the cold start; ClusterChanges and ListenerChanges are
	// the changes ACKed on the stream that touched clusters and listeners,
	// times M: Envoy must count at least as many.
	CDSUpdates      uint64 `json:"cdsUpdates"`
	LDSUpdates      uint64 `json:"ldsUpdates"`
	ClusterChanges  uint64 `json:"clusterChanges"`
	ListenerChanges uint64 `json:"listenerChanges"`
	// Checked says whether every Envoy's config_dump held exactly the
	// served resources (names, and versions where the system tells them).
	Checked bool `json:"configDumpChecked"`
}

// envoyFleet runs real Envoy gateways against the server. It learns what
// each Envoy ACKed from the server's view of its stream (xds.Server.Clients:
// the version last sent and the version last ACKed per type, with their
// times), and what each Envoy applied from its admin interface.
type envoyFleet struct {
	srv *xds.Server
	bin string
	// bootstrap is the envoy-configs file the Envoys start from.
	bootstrap string
	dir       string
	keepLogs  string
	cfg       fleetConfig
	envoys    []*envoyrun.Envoy
	ev        chan fleetEvent
	// The bootstrap's own clusters and listeners.
	staticClusters, staticListeners int

	mu sync.Mutex
	// pending changes, by id: the types to be ACKed by every Envoy with a
	// response sent after since.
	pending map[uint64]*pendingChange
	// counts of an expectSync; since is when it was registered.
	counts      map[string]int
	countsSince time.Time
	// typeChanges counts the changes ACKed by type.
	typeChanges map[string]uint64
	// nacked is every NACK seen, by node and type.
	nacked map[string]bool
	errs   []string
	wake   chan struct{}
	quit   chan struct{}
	done   chan struct{}
	// following is set once connect started follow, which closes done.
	following bool
}

type pendingChange struct {
	types []string
	since time.Time
}

// newEnvoyFleet runs Envoys from the bootstrap file of envoy-configs
// ("egress.yaml", "ingress.yaml") with their files in dir; when keepLogs
// is set, each Envoy's log is copied to keepLogs+node+".log" at close.
func newEnvoyFleet(srv *xds.Server, dir, keepLogs, bootstrap string) (*envoyFleet, error) {
	bin, err := envoyrun.Binary()
	if err != nil {
		return nil, err
	}
	f := &envoyFleet{
		srv: srv, bin: bin, bootstrap: bootstrap, dir: dir, keepLogs: keepLogs, ev: make(chan fleetEvent, 1<<12),
		pending: map[uint64]*pendingChange{}, typeChanges: map[string]uint64{}, nacked: map[string]bool{},
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
	}
	return f, nil
}

func (f *envoyFleet) events() <-chan fleetEvent { return f.ev }

// benchEnvoyHeap is each bench Envoy's heap limit: an egress gateway takes
// about 110 KB per imported service (1.1 GB at 10,000), past the shipped
// bootstrap's 1 GiB, where its overload manager would refuse requests and
// the bench would measure that instead.
const benchEnvoyHeap = 4 << 30

func (f *envoyFleet) connect(cfg fleetConfig) error {
	f.cfg = cfg
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, node := range cfg.Nodes {
		b, err := envoyconfigs.Load(f.bootstrap)
		if err != nil {
			return err
		}
		if err := envoyconfigs.Apply(b, envoyconfigs.Params{NodeID: node, Admin: "127.0.0.1:0", XDS: cfg.Addr, SotW: !cfg.Delta, MaxHeapBytes: benchEnvoyHeap}); err != nil {
			return err
		}
		f.staticClusters = len(b.GetStaticResources().GetClusters())
		f.staticListeners = len(b.GetStaticResources().GetListeners())
		boot, err := envoyconfigs.Marshal(b)
		if err != nil {
			return err
		}
		e, err := envoyrun.Start(ctx, envoyrun.Config{Binary: f.bin, Name: node, Dir: f.dir, Bootstrap: boot})
		if err != nil {
			return err
		}
		f.envoys = append(f.envoys, e)
		go f.watchExit(e)
	}
	// The Envoys and their nodes are set: they are followed from now on.
	f.following = true
	go f.follow()
	return nil
}

// watchExit reports an Envoy that ended before the fleet was closed.
func (f *envoyFleet) watchExit(e *envoyrun.Envoy) {
	select {
	case <-f.quit:
	case <-e.Exited():
		select {
		case <-f.quit:
		default:
			f.fail(fmt.Sprintf("envoy %s exited: %s", e.Name(), e.LogTail(10)))
		}
	}
}

func (f *envoyFleet) fail(msg string) {
	f.mu.Lock()
	f.errs = append(f.errs, msg)
	f.mu.Unlock()
	f.ev <- fleetEvent{At: time.Now(), Err: msg}
}

func (f *envoyFleet) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *envoyFleet) expect(exps []Expect) error {
	byChange := map[uint64][]string{}
	for _, e := range exps {
		if !slices.Contains(byChange[e.Change], e.Type) {
			byChange[e.Change] = append(byChange[e.Change], e.Type)
		}
	}
	if len(byChange) > 1 {
		return errors.New("real Envoy gateways time one change at a time")
	}
	now := time.Now()
	f.mu.Lock()
	for id, types := range byChange {
		f.pending[id] = &pendingChange{types: types, since: now}
	}
	f.mu.Unlock()
	f.poke()
	return nil
}

func (f *envoyFleet) expectSync(counts map[string]int) error {
	f.mu.Lock()
	f.counts, f.countsSince = counts, time.Now()
	f.mu.Unlock()
	f.poke()
	return nil
}

// follow polls the server's view of the streams while anything is
// awaited: often at first, then less, as the times it reports are those
// the server saw the ACKs at, not those of the polls.
func (f *envoyFleet) follow() {
	defer close(f.done)
	interval := time.Millisecond
	for {
		f.mu.Lock()
		busy := len(f.pending) > 0 || f.counts != nil
		f.mu.Unlock()
		var tick <-chan time.Time
		if busy {
			tick = time.After(interval)
			interval = min(2*interval, 20*time.Millisecond)
		} else {
			interval = time.Millisecond
		}
		select {
		case <-f.quit:
			return
		case <-f.wake:
			interval = time.Millisecond
		case <-tick:
		}
		f.poll()
	}
}

// streams returns the server's view of each Envoy's stream, by node id.
func (f *envoyFleet) streams() map[string]map[string]xds.TypeStatus {
	out := map[string]map[string]xds.TypeStatus{}
	for _, c := range f.srv.Clients() {
		if !slices.Contains(f.cfg.Nodes, c.NodeID) {
			continue
		}
		m := map[string]xds.TypeStatus{}
		for _, t := range c.Types {
			m[t.TypeURL] = t
		}
		out[c.NodeID] = m
	}
	return out
}

// acked returns when the type's last response sent after since was ACKed,
// and whether it was.
func acked(ts xds.TypeStatus, since time.Time) (time.Time, bool) {
	if ts.SentAt.Before(since) || ts.SentVersion == "" || ts.AckedVersion != ts.SentVersion || ts.AckedAt.Before(ts.SentAt) {
		return time.Time{}, false
	}
	return ts.AckedAt, true
}

func (f *envoyFleet) poll() {
	if len(f.cfg.Nodes) == 0 {
		return
	}
	st := f.streams()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, node := range f.cfg.Nodes {
		for t, ts := range st[node] {
			if n := ts.LastNack; n != nil && !f.nacked[node+" "+t] {
				f.nacked[node+" "+t] = true
				msg := fmt.Sprintf("envoy %s rejected %s version %q: %s", node, typeLabel(t), n.Version, n.Reason)
				f.errs = append(f.errs, msg)
				f.ev <- fleetEvent{At: n.At, Err: msg}
			}
		}
	}
	// all returns the last ACK of types by every Envoy since since.
	all := func(types []string, since time.Time) (time.Time, bool) {
		var last time.Time
		for _, node := range f.cfg.Nodes {
			for _, t := range types {
				at, ok := acked(st[node][t], since)
				if !ok {
					return time.Time{}, false
				}
				if at.After(last) {
					last = at
				}
			}
		}
		return last, true
	}
	ids := make([]uint64, 0, len(f.pending))
	for id := range f.pending {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		pc := f.pending[id]
		if at, ok := all(pc.types, pc.since); ok {
			delete(f.pending, id)
			for _, t := range pc.types {
				f.typeChanges[t]++
			}
			f.ev <- fleetEvent{Change: id, At: at}
		}
	}
	if f.counts != nil {
		var types []string
		for t, n := range f.counts {
			if n > 0 {
				types = append(types, t)
			}
		}
		sort.Strings(types)
		if at, ok := all(types, f.countsSince); ok && f.holdCounts() {
			f.counts = nil
			f.ev <- fleetEvent{At: at}
		}
	}
}

// holdCounts reports whether every Envoy is initialized (its first
// clusters and listeners received, also when there are none) and has the
// counted clusters and listeners active, none warming; called with f.mu
// held, at the end of a cold start only.
func (f *envoyFleet) holdCounts() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, e := range f.envoys {
		if e.Ready(ctx) != nil {
			return false
		}
		s, err := e.Stats(ctx, `^(cluster_manager\.(active|warming)_clusters|listener_manager\.total_listeners_(active|warming))$`)
		if err != nil {
			return false
		}
		if s["cluster_manager.warming_clusters"] != 0 || s["listener_manager.total_listeners_warming"] != 0 ||
			s["cluster_manager.active_clusters"] != uint64(f.counts[resource.ClusterType]+f.staticClusters) ||
			s["listener_manager.total_listeners_active"] != uint64(f.counts[resource.ListenerType]+f.staticListeners) {
			return false
		}
	}
	return true
}

func (f *envoyFleet) disconnect() error {
	return errors.New("not with real Envoy gateways")
}

func (f *envoyFleet) reconnect() error { return f.disconnect() }

// stats are the Envoys' CPU time and the NACKs the server saw.
func (f *envoyFleet) stats() (fleetStats, error) {
	var s fleetStats
	for _, e := range f.envoys {
		cpu, _, err := procUsage(e.Pid())
		if err != nil {
			return s, err
		}
		s.CPUMs += ms(cpu)
	}
	f.mu.Lock()
	s.NACKs = len(f.nacked)
	s.StreamErrors = slices.Clone(f.errs)
	f.mu.Unlock()
	return s, nil
}

// figures reads what the Envoys report of themselves.
func (f *envoyFleet) figures(ctx context.Context, into *EnvoyFigures) error {
	into.UpdateRejected, into.InitFetchTimeout, into.CDSUpdates, into.LDSUpdates = 0, 0, 0, 0
	into.Overloaded, into.HeapBytes = 0, 0
	for _, e := range f.envoys {
		s, err := e.Stats(ctx, `(update_rejected|init_fetch_timeout|update_success|stop_accepting_requests\.active)$`)
		if err != nil {
			return err
		}
		if s["overload.envoy.overload_actions.stop_accepting_requests.active"] > 0 {
			into.Overloaded++
		}
		mem, err := e.Memory(ctx)
		if err != nil {
			return err
		}
		into.HeapBytes = max(into.HeapBytes, mem.GetAllocated())
		into.UpdateRejected += s.Sum("", ".update_rejected")
		into.InitFetchTimeout += s.Sum("", ".init_fetch_timeout")
		into.CDSUpdates += s["cluster_manager.cds.update_success"]
		into.LDSUpdates += s["listener_manager.lds.update_success"]
		_, rss, err := procUsage(e.Pid())
		if err != nil {
			return err
		}
		into.EndRSSBytes = max(into.EndRSSBytes, rss)
	}
	f.mu.Lock()
	into.ClusterChanges = f.typeChanges[resource.ClusterType] * uint64(len(f.envoys))
	into.ListenerChanges = f.typeChanges[resource.ListenerType] * uint64(len(f.envoys))
	f.mu.Unlock()
	// The bench process may hold memory freed by earlier runs: return it
	// first, so that the figure is this run's.
	debug.FreeOSMemory()
	_, into.ControlPlaneRSSBytes, _ = procUsage(os.Getpid())
	return nil
}

// endFigures reads the Envoys' figures at the end of a run into fig, which
// holds those of the cold start: the cds and lds updates become those
// since. checked is the verdict of the config_dump check. It returns what
// is wrong with the figures: Envoy must count at least the cluster and
// listener changes ACKed.
func (f *envoyFleet) endFigures(ctx context.Context, fig *EnvoyFigures, checked bool) (string, error) {
	cds, lds := fig.CDSUpdates, fig.LDSUpdates
	if err := f.figures(ctx, fig); err != nil {
		return "", err
	}
	fig.CDSUpdates -= cds
	fig.LDSUpdates -= lds
	fig.Checked = checked
	if fig.CDSUpdates < fig.ClusterChanges || fig.LDSUpdates < fig.ListenerChanges {
		return fmt.Sprintf("envoy stats: %d cds and %d lds updates applied, fewer than the %d cluster and %d listener changes ACKed",
			fig.CDSUpdates, fig.LDSUpdates, fig.ClusterChanges, fig.ListenerChanges), nil
	}
	return "", nil
}

// summary is the progress line of the figures at the end of a run.
func (fig *EnvoyFigures) summary() string {
	return fmt.Sprintf("envoy: %d update_rejected, %d init_fetch_timeout; %d cds, %d lds updates applied for %d cluster, %d listener changes ACKed; RSS %.0f MB",
		fig.UpdateRejected, fig.InitFetchTimeout, fig.CDSUpdates, fig.LDSUpdates,
		fig.ClusterChanges, fig.ListenerChanges, float64(fig.EndRSSBytes)/1e6)
}

// check compares each Envoy's config_dump with what the system serves:
// the names of every type, and their versions where the system tells them.
func (f *envoyFleet) check(want checkWant) (CheckResult, error) {
	res, problem := startCheck(len(f.envoys), want)
	for _, e := range f.envoys {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		held, listeners, inlined, err := dumped(ctx, e)
		cancel()
		if err != nil {
			return *res, err
		}
		bad := false
		for _, t := range dumpTypes {
			// Envoy's config_dump shows no version for endpoints.
			versioned := t != resource.EndpointType
			for name := range want.Digests[t] {
				v, ok := held[t][name]
				switch {
				case !ok:
					bad = true
					problem("%s lacks %s %s", e.Name(), typeLabel(t), name)
				case !versioned:
				// Envoy keeps one version for every scope (the last
				// update's): the delta versions of each are not there.
				// A listener updated in place (its filter chains only)
				// keeps in config_dump the version it was created with
				// (Envoy 1.40): its content is compared.
				case t == resource.ListenerType && listeners[name] == want.Digests[t][name]:
				case want.Versions != nil && want.Versions[t] != nil && t != resource.ScopedRouteType && want.Versions[t][name] != v:
					bad = true
					problem("%s applied %s %s at version %q, the server serves %q", e.Name(), typeLabel(t), name, v, want.Versions[t][name])
				case want.Sotw[t] != "" && want.Sotw[t] != v:
					bad = true
					problem("%s applied %s %s at version %q, the server serves %q", e.Name(), typeLabel(t), name, v, want.Sotw[t])
				}
			}
			for name := range held[t] {
				if _, ok := want.Digests[t][name]; ok || t == resource.EndpointType && inlined[name] {
					continue
				}
				if want.PartialSotw && t != resource.ClusterType && t != resource.ListenerType {
					res.Stale++
					continue
				}
				bad = true
				problem("%s holds %s %s, which is not served", e.Name(), typeLabel(t), name)
			}
		}
		if bad {
			res.Mismatched++
		}
	}
	sort.Strings(res.Problems)
	return *res, nil
}

// dumpTypes are the types a config_dump shows.
var dumpTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.ScopedRouteType, resource.SecretType}

// dumped returns the dynamic resources an Envoy applied, with their
// versions, by type and name, and the digests of its listeners; those
// still warming are not applied. At 10,000 services Envoy takes longer
// than envoyrun's default admin timeout to answer on a busy machine: ctx
// bounds it instead.
func dumped(ctx context.Context, e *envoyrun.Envoy) (map[string]map[string]string, map[string]uint64, map[string]bool, error) {
	cd, err := e.ConfigDump(ctx, "include_eds")
	if err != nil {
		return nil, nil, nil, err
	}
	applied, err := envoyrun.AppliedResources(cd)
	if applied == nil {
		return nil, nil, nil, err
	}
	out := map[string]map[string]string{}
	for _, t := range dumpTypes {
		out[t] = map[string]string{}
		for name, a := range applied[t] {
			out[t][name] = a.Version
		}
	}
	listeners := map[string]uint64{}
	for name, a := range applied[resource.ListenerType] {
		l := &listener.Listener{}
		if err := a.Resource.UnmarshalTo(l); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: listener %s: %w", e.Name(), name, err)
		}
		listeners[name] = digest(l)
	}
	return out, listeners, inline(applied), nil
}

// inline names the clusters that carry their load assignment (STATIC,
// STRICT_DNS): config_dump?include_eds shows it beside those of EDS, though
// it was not served on its own.
func inline(applied map[string]map[string]envoyrun.Applied) map[string]bool {
	out := map[string]bool{}
	for name, a := range applied[resource.ClusterType] {
		c := &cluster.Cluster{}
		if a.Resource.UnmarshalTo(c) == nil && c.GetType() != cluster.Cluster_EDS {
			out[name] = true
		}
	}
	return out
}

func (f *envoyFleet) close() error {
	select {
	case <-f.quit:
		return nil
	default:
	}
	close(f.quit)
	if f.following {
		<-f.done
	}
	if f.keepLogs != "" {
		for _, e := range f.envoys {
			if b, err := os.ReadFile(e.LogPath()); err == nil {
				_ = os.WriteFile(f.keepLogs+e.Name()+".log", b, 0o600)
			}
		}
	}
	var errs []error
	for _, e := range f.envoys {
		if err := e.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// procUsage returns the CPU time (user and system) and resident memory of
// a process, from /proc.
func procUsage(pid int) (time.Duration, uint64, error) {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	// The fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 22 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	// utime and stime are fields 14 and 15 (from 1, counting pid and
	// comm), in clock ticks of 1/100 s on Linux; rss is field 24, in pages.
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	rss, _ := strconv.ParseUint(fields[21], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, rss * uint64(os.Getpagesize()), nil
}
