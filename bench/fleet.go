package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/xds/adsclient"
)

// fleetConfig says how to run the simulated gateways.
type fleetConfig struct {
	Addr  string `json:"addr"`
	Delta bool   `json:"delta"`
	// PartialSotw: see adsclient.Options.PartialSotw.
	PartialSotw bool     `json:"partialSotw"`
	Nodes       []string `json:"nodes"`
}

// fleetEvent reports a change every gateway holds (Change > 0), that every
// gateway reached the state counts of expectSync (Change == 0), or that a
// gateway's stream failed (Err): it will not hold anything more.
type fleetEvent struct {
	Change uint64
	At     time.Time
	Err    string
}

// fleetStats are the counters of a fleet.
type fleetStats struct {
	NACKs int `json:"nacks"`
	// WireBytes were read from the gateways' connections, TLS-free HTTP/2
	// framing included.
	WireBytes int64 `json:"wireBytes"`
	// ResourceBytes are the serialized resources received.
	ResourceBytes int64 `json:"resourceBytes"`
	// StreamErrors are streams that ended other than by disconnect.
	StreamErrors []string `json:"streamErrors,omitempty"`
	// CPUMs is the CPU time of the process running the gateways (this
	// process's when they run in process).
	CPUMs float64 `json:"cpuMs"`
}

// checkWant is what every gateway must hold at the end of a run.
type checkWant struct {
	// Digests by type and name; the exact set of names.
	Digests map[string]map[string]uint64 `json:"digests"`
	// Versions are the delta versions by type and name, when the system
	// tells them.
	Versions map[string]map[string]string `json:"versions,omitempty"`
	// Sotw are the state-of-the-world versions by type, when the system
	// tells them.
	Sotw map[string]string `json:"sotw,omitempty"`
	// PartialSotw allows names beyond Digests for types a partial
	// state-of-the-world stream cannot remove; they are counted as Stale.
	PartialSotw bool `json:"partialSotw,omitempty"`
}

// CheckResult is the final-state check of a run.
type CheckResult struct {
	Gateways int `json:"gateways"`
	// Mismatched gateways hold anything else than expected.
	Mismatched int `json:"mismatched"`
	// Stale are resources held beyond the expected ones that a
	// state-of-the-world stream of the system cannot remove (LinearCache
	// sends endpoints, routes and secrets as partial responses).
	Stale int `json:"stale,omitempty"`
	// VersionsChecked says whether the served versions were compared too.
	VersionsChecked bool     `json:"versionsChecked"`
	Problems        []string `json:"problems,omitempty"`
}

// OK reports whether every gateway held exactly what was expected.
func (c CheckResult) OK() bool { return c.Mismatched == 0 && c.Gateways > 0 }

// startCheck is the check of n gateways against want, before any is
// looked at, and how the check records a problem (the first ten).
func startCheck(n int, want checkWant) (*CheckResult, func(format string, args ...any)) {
	res := &CheckResult{Gateways: n, VersionsChecked: want.Versions != nil || want.Sotw != nil}
	return res, func(format string, args ...any) {
		if len(res.Problems) < 10 {
			res.Problems = append(res.Problems, fmt.Sprintf(format, args...))
		}
	}
}

// fleet is a set of simulated gateways, in this process or another.
type fleet interface {
	connect(cfg fleetConfig) error
	// expect registers expectations; it returns once every gateway will
	// report them.
	expect(exps []Expect) error
	// expectSync registers per-type resource counts; a Change 0 event
	// follows once every gateway holds that many of each type.
	expectSync(counts map[string]int) error
	// disconnect closes every stream and connection; reconnect dials anew
	// and resumes each gateway from the state it holds.
	disconnect() error
	reconnect() error
	stats() (fleetStats, error)
	check(want checkWant) (CheckResult, error)
	events() <-chan fleetEvent
	close() error
}

// localFleet runs the gateways as goroutines of this process.
type localFleet struct {
	cfg    fleetConfig
	gws    []*gateway
	ev     chan fleetEvent
	wire   atomic.Int64
	closed bool

	// counts are those of an expectSync before connect.
	counts map[string]int

	mu      sync.Mutex
	changes map[uint64]*changeTrack
	sync    *changeTrack
	errs    []string
}

type changeTrack struct {
	remaining []int
	left      int
	last      time.Time
}

func newLocalFleet() *localFleet {
	return &localFleet{ev: make(chan fleetEvent, 1<<16), changes: map[uint64]*changeTrack{}}
}

func (f *localFleet) events() <-chan fleetEvent { return f.ev }

// gateway is one simulated Envoy and what it is expected to come to hold.
type gateway struct {
	f      *localFleet
	idx    int
	client *adsclient.Client
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	pending map[string][]*pendingKey // by type
	counts  map[string]int           // of expectSync, nil when met
}

// pendingKey is the queue of expectations of one resource, oldest change
// first.
type pendingKey struct {
	name  string
	queue []Expect
}

func (f *localFleet) connect(cfg fleetConfig) error {
	f.cfg = cfg
	for i, node := range cfg.Nodes {
		g := &gateway{f: f, idx: i, pending: map[string][]*pendingKey{}}
		g.client = adsclient.New(adsclient.Options{
			NodeID:      node,
			Delta:       cfg.Delta,
			PartialSotw: cfg.PartialSotw,
			DigestsOnly: true,
			OnUpdate:    g.onUpdate,
		})
		f.gws = append(f.gws, g)
	}
	if f.counts != nil {
		if err := f.expectSync(f.counts); err != nil {
			return err
		}
		f.counts = nil
	}
	return f.reconnect()
}

// countingConn counts the bytes read from a connection in read, and those
// written to it in written, each when set.
type countingConn struct {
	net.Conn
	read, written *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	count(c.read, n)
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	count(c.written, n)
	return n, err
}

func count(into *atomic.Int64, n int) {
	if into != nil {
		into.Add(int64(n))
	}
}

func (f *localFleet) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	network := "tcp"
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		network, addr = "unix", path
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, read: &f.wire}, nil
}

func (f *localFleet) reconnect() error {
	for _, g := range f.gws {
		conn, err := grpc.NewClient("passthrough:///"+f.cfg.Addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(f.dial),
			// A state-of-the-world response carries a whole type, which at
			// 100,000 services is beyond gRPC's default of 4 MiB; Envoy has
			// no such limit by default.
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		g.conn, g.cancel, g.done = conn, cancel, make(chan struct{})
		go func() {
			defer close(g.done)
			if err := g.client.Run(ctx, conn, nil); err != nil {
				msg := fmt.Sprintf("%s: %v", f.cfg.Nodes[g.idx], err)
				f.mu.Lock()
				f.errs = append(f.errs, msg)
				f.ev <- fleetEvent{At: time.Now(), Err: msg}
				f.mu.Unlock()
			}
		}()
	}
	return nil
}

func (f *localFleet) disconnect() error {
	for _, g := range f.gws {
		if g.cancel == nil {
			continue
		}
		g.cancel()
		<-g.done
		_ = g.conn.Close()
		g.cancel = nil
	}
	return nil
}

func (f *localFleet) expect(exps []Expect) error {
	byChange := map[uint64]int{}
	for _, e := range exps {
		byChange[e.Change]++
	}
	f.mu.Lock()
	for id, n := range byChange {
		ct := &changeTrack{remaining: make([]int, len(f.gws)), left: len(f.gws)}
		for i := range ct.remaining {
			ct.remaining[i] = n
		}
		f.changes[id] = ct
	}
	f.mu.Unlock()
	now := time.Now()
	for _, g := range f.gws {
		var met []Expect
		g.mu.Lock()
		for _, e := range exps {
			met = g.add(e, met)
		}
		g.mu.Unlock()
		if len(met) > 0 {
			f.met(g.idx, met, now)
		}
	}
	return nil
}

// add queues e, and returns met with what a moot e meets.
func (g *gateway) add(e Expect, met []Expect) []Expect {
	keys := g.pending[e.Type]
	i := slices.IndexFunc(keys, func(k *pendingKey) bool { return k.name == e.Name })
	if e.Moot {
		if i >= 0 {
			met = append(met, keys[i].queue...)
			g.pending[e.Type] = slices.Delete(keys, i, i+1)
		}
		return append(met, e)
	}
	if i >= 0 {
		keys[i].queue = append(keys[i].queue, e)
		return met
	}
	g.pending[e.Type] = append(keys, &pendingKey{name: e.Name, queue: []Expect{e}})
	return met
}

func (f *localFleet) expectSync(counts map[string]int) error {
	if len(f.gws) == 0 {
		f.counts = counts
		return nil
	}
	f.mu.Lock()
	f.sync = &changeTrack{left: len(f.gws)}
	f.mu.Unlock()
	for _, g := range f.gws {
		g.mu.Lock()
		g.counts = counts
		met := g.countsMet()
		if met {
			g.counts = nil
		}
		g.mu.Unlock()
		if met {
			f.synced(time.Now())
		}
	}
	return nil
}

func (g *gateway) countsMet() bool {
	for t, n := range g.counts {
		if g.client.Len(t) != n {
			return false
		}
	}
	return true
}

// onUpdate runs on the gateway's stream goroutine after each ACK.
func (g *gateway) onUpdate(u adsclient.Update) {
	if u.Rejected != nil {
		return
	}
	g.mu.Lock()
	synced := false
	if g.counts != nil && g.countsMet() {
		g.counts, synced = nil, true
	}
	var met []Expect
	keys := g.pending[u.TypeURL]
	kept := keys[:0]
	for _, k := range keys {
		d, held := g.client.Held(u.TypeURL, k.name)
		// The newest expectation the state meets, and every older one
		// (superseded by it), are met.
		last := -1
		for i, e := range k.queue {
			if e.Absent && !held || !e.Absent && held && (e.Digest == 0 || e.Digest == d) {
				last = i
			}
		}
		met = append(met, k.queue[:last+1]...)
		k.queue = k.queue[last+1:]
		if len(k.queue) > 0 {
			kept = append(kept, k)
		}
	}
	clear(keys[len(kept):])
	g.pending[u.TypeURL] = kept
	g.mu.Unlock()
	if synced {
		g.f.synced(u.Acked)
	}
	if len(met) > 0 {
		g.f.met(g.idx, met, u.Acked)
	}
}

func (f *localFleet) met(gw int, exps []Expect, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range exps {
		ct := f.changes[e.Change]
		if ct == nil {
			continue
		}
		ct.remaining[gw]--
		if ct.remaining[gw] > 0 {
			continue
		}
		ct.left--
		if at.After(ct.last) {
			ct.last = at
		}
		if ct.left == 0 {
			delete(f.changes, e.Change)
			f.ev <- fleetEvent{Change: e.Change, At: ct.last}
		}
	}
}

func (f *localFleet) synced(at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sync == nil {
		return
	}
	f.sync.left--
	if at.After(f.sync.last) {
		f.sync.last = at
	}
	if f.sync.left == 0 {
		f.ev <- fleetEvent{At: f.sync.last}
		f.sync = nil
	}
}

func (f *localFleet) stats() (fleetStats, error) {
	s := fleetStats{WireBytes: f.wire.Load(), CPUMs: ms(cpuTime())}
	for _, g := range f.gws {
		s.NACKs += g.client.Nacks()
		s.ResourceBytes += g.client.Bytes()
	}
	f.mu.Lock()
	s.StreamErrors = slices.Clone(f.errs)
	f.mu.Unlock()
	return s, nil
}

func (f *localFleet) check(want checkWant) (CheckResult, error) {
	res, problem := startCheck(len(f.gws), want)
	for i, g := range f.gws {
		node := f.cfg.Nodes[i]
		bad := false
		held := g.client.Digests()
		versions := g.client.Versions()
		for _, t := range adsclient.Types {
			full := t == resource.ClusterType || t == resource.ListenerType
			for name, d := range want.Digests[t] {
				got, ok := held[t][name]
				switch {
				case !ok:
					bad = true
					problem("%s lacks %s %s", node, typeLabel(t), name)
				case got != d:
					bad = true
					problem("%s holds another %s %s", node, typeLabel(t), name)
				case want.Versions != nil && want.Versions[t][name] != versions[t][name]:
					bad = true
					problem("%s holds %s %s at version %q, the server serves %q", node, typeLabel(t), name, versions[t][name], want.Versions[t][name])
				}
			}
			for name := range held[t] {
				if _, ok := want.Digests[t][name]; ok {
					continue
				}
				if want.PartialSotw && !full {
					res.Stale++
					continue
				}
				bad = true
				problem("%s holds %s %s, which is not served", node, typeLabel(t), name)
			}
			if v, ok := want.Sotw[t]; ok && v != g.client.SotwVersion(t) {
				bad = true
				problem("%s holds %s version %q, the server serves %q", node, typeLabel(t), g.client.SotwVersion(t), v)
			}
		}
		if bad {
			res.Mismatched++
		}
	}
	sort.Strings(res.Problems)
	return *res, nil
}

func (f *localFleet) close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	return f.disconnect()
}

// typeLabel is the short name of a type URL: cluster, listener...
func typeLabel(t string) string {
	switch t {
	case resource.ClusterType:
		return "cluster"
	case resource.EndpointType:
		return "endpoints"
	case resource.ListenerType:
		return "listener"
	case resource.RouteType, resource.ScopedRouteType:
		return "route"
	case resource.SecretType:
		return "secret"
	}
	return t
}

var errFleetClosed = errors.New("fleet process ended")
