package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/store"
	"github.com/meshfed/meshfed/xds"
)

// The ingress gateway's measurement: one real Envoy from envoy-configs'
// ingress.yaml, node id ingress-gateway, served by meshfed's runner, cache
// and xDS server (delta ADS on a Unix socket), with N exports of one
// terminated port each, all consumed by the one peer, mesh-b. Its TLS
// contexts hold real SVIDs and bundles (certs.NewTestCA).

// IngressReport is the ingress gateway's measurement.
type IngressReport struct {
	// Empty is the Envoy with no export, the base of the others' growth.
	Empty *IngressRun `json:"empty"`
	// Runs are those with N exports, by N.
	Runs []*IngressRun `json:"runs"`
}

// IngressRun is one ingress Envoy with N exports.
type IngressRun struct {
	Exports int `json:"exports"`
	// Resources are the ingress resources served; ListenerBytes the size
	// of the two ingress listeners, which every export change sends whole.
	Resources     int `json:"resources"`
	ListenerBytes int `json:"listenerBytes"`
	// AgentHeapPerExport is the agent's live heap (catalog, translation
	// and cache) per export, before any gateway connected.
	AgentHeapPerExport float64 `json:"agentHeapPerExportBytes"`
	// ColdMs is from Envoy's start until it ACKed its clusters and
	// listeners and had every one active, none warming.
	ColdMs float64 `json:"coldMs"`
	// HeapBytes is Envoy's server.memory_allocated then. HeapPerExport is
	// HeapBytes / N; GrowthPerExport is what HeapBytes is beyond that of
	// the Envoy with no export, / N.
	HeapBytes       uint64  `json:"heapBytes"`
	HeapPerExport   float64 `json:"heapPerExportBytes"`
	GrowthPerExport float64 `json:"heapGrowthPerExportBytes,omitempty"`
	// Changes are the export changes, made one at a time, by kind (see
	// exportKinds).
	Changes map[string]*ExportChanges `json:"changes,omitempty"`
	Envoy   *EnvoyFigures             `json:"envoy,omitempty"`
	// Check compares Envoy's config_dump at the end with what the cache
	// serves.
	Check   CheckResult `json:"check"`
	Errors  []string    `json:"errors,omitempty"`
	Failed  string      `json:"failed,omitempty"`
	Seconds float64     `json:"seconds"`
}

// ExportChanges are the changes of one kind.
type ExportChanges struct {
	// Latency is from the catalog write until Envoy ACKed a response of
	// every type the change touches, sent after it was made.
	Latency Latency `json:"latency"`
	// CPUMs is the agent process's CPU time (translation, cache, xDS
	// server) from the catalog write until then.
	CPUMs Spread `json:"cpuMs"`
	// WireBytes were written to Envoy's xDS connection meanwhile: the
	// responses that carry the change, with their gRPC and HTTP/2 framing.
	WireBytes Spread `json:"wireBytes"`
}

// The kinds of export change, in the order each round makes them.
const (
	ExportAdd       = "add"
	ExportRemove    = "remove"
	ExportEndpoints = "endpoints"
)

// exportKinds are the kinds of export change with the types a change of
// each touches on Envoy's stream: an export added or removed changes its
// cluster and both ingress listeners, and an added one's load assignment
// follows its cluster (a removed one's is unsubscribed with it); an
// endpoint change touches the load assignment only.
var exportKinds = []struct {
	name  string
	types []string
}{
	{ExportAdd, []string{resource.ClusterType, resource.EndpointType, resource.ListenerType}},
	{ExportRemove, []string{resource.ClusterType, resource.ListenerType}},
	{ExportEndpoints, []string{resource.EndpointType}},
}

// ingressLeast is how many rounds of changes run whatever SingleBudget.
const ingressLeast = 10

// ingressNode is the ingress gateway's node id, as in ingress.yaml.
const ingressNode = "ingress-gateway"

// runIngress measures the ingress Envoy with no export, then with each N
// of opts.Ingress.
func runIngress(ctx context.Context, opts *Options, p *pki) *IngressReport {
	rep := &IngressReport{}
	sizes := append([]int{0}, opts.Ingress...)
	for i, n := range sizes {
		if ctx.Err() != nil {
			break
		}
		prefix := fmt.Sprintf("[ingress %d/%d] N=%d", i+1, len(sizes), n)
		run := measureIngress(ctx, opts, p, prefix, n, rep.Empty)
		if n == 0 {
			rep.Empty = run
		} else {
			rep.Runs = append(rep.Runs, run)
		}
	}
	return rep
}

// ingressEnv is one ingress run's catalog, system, server and Envoy.
type ingressEnv struct {
	opts     *Options
	run      *IngressRun
	progress func(format string, args ...any)
	cat      *catalog.Catalog
	sys      *meshfedSystem
	fleet    *envoyFleet
	events   *collector
	// written counts the bytes written to Envoy's xDS connection.
	written *atomic.Int64
	// exports are the catalog's: the run's N first, then the one a round
	// added, until it removes it. next numbers the next one added.
	exports []model.Export
	next    int
	added   string
	rnd     *rand.Rand
	ipSeq   uint32
	changes uint64
}

func measureIngress(ctx context.Context, opts *Options, p *pki, prefix string, n int, empty *IngressRun) *IngressRun {
	x := &ingressEnv{
		opts: opts, run: &IngressRun{Exports: n},
		progress: func(format string, args ...any) {
			fmt.Fprintf(opts.Progress, "%s: %s\n", prefix, fmt.Sprintf(format, args...))
		},
		rnd: rand.New(rand.NewPCG(opts.Seed, uint64(n))),
	}
	start := time.Now()
	if err := x.measure(ctx, p, empty); err != nil {
		x.run.Failed = err.Error()
		x.progress("FAILED: %v", err)
	}
	x.run.Seconds = time.Since(start).Seconds()
	return x.run
}

func (x *ingressEnv) errorf(format string, args ...any) {
	x.run.Errors = append(x.run.Errors, fmt.Sprintf(format, args...))
}

func (x *ingressEnv) measure(parent context.Context, p *pki, empty *IngressRun) (err error) {
	in, err := ingressInput(p)
	if err != nil {
		return err
	}
	h0 := heap()
	st, closeStore, err := openStore(x.opts.StoreDir)
	if err != nil {
		return err
	}
	defer closeStore()
	if x.sys, err = x.newAgent(st, in); err != nil {
		return err
	}
	var wg sync.WaitGroup
	ctx, stop, err := startSystem(parent, x.sys, &wg)
	if err != nil {
		return err
	}
	defer stop()
	x.served(h0)
	xr, err := startXDS(ctx, &wg, x.sys.cache(), model.Ingress)
	if err != nil {
		return err
	}
	defer xr.close()
	x.written = xr.written
	keep, err := envoyLogs(x.opts.EnvoyLogs, fmt.Sprintf("ingress-%d-", x.run.Exports))
	if err != nil {
		return err
	}
	if x.fleet, err = newEnvoyFleet(xr.srv, xr.dir, keep, "ingress.yaml"); err != nil {
		return err
	}
	defer closeFleet(x.fleet, "envoy", &err)
	x.events = newCollector(x.fleet.events())
	defer x.events.stop()
	if err := x.coldStart(ctx, xr.lis, empty); err != nil {
		return err
	}
	if x.run.Exports > 0 {
		x.changeSeries()
	}
	return x.finalCheck(ctx)
}

// ingressInput is mesh-a's translation input with its ingress listener on
// a loopback port free now: a fixed one may be another Envoy's on a shared
// machine.
func ingressInput(p *pki) (snapshot.Input, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return snapshot.Input{}, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return snapshot.Input{}, err
	}
	in := p.input()
	in.Gateways.Ingress = snapshot.SocketAddress{Address: "127.0.0.1", Port: uint32(port)}
	return in, nil
}

// newAgent fills the catalog with the run's exports and returns meshfed's
// system on it, serving the ingress role.
func (x *ingressEnv) newAgent(st *store.Store, in snapshot.Input) (*meshfedSystem, error) {
	x.cat = catalog.New(st, zap.NewNop())
	if err := x.cat.SetPeers(catalogPeers()); err != nil {
		return nil, err
	}
	for x.next = 0; x.next < x.run.Exports; x.next++ {
		x.exports = append(x.exports, benchExport(x.next, localTD, peerName, x.endpoint()))
	}
	x.cat.SetExports(x.exports)
	return newMeshfed(systemEnv{catalog: x.cat, store: st, input: in, holdoff: x.opts.Holdoff, role: model.Ingress})
}

// served records what the started system serves, and the agent's heap
// beyond h0.
func (x *ingressEnv) served(h0 uint64) {
	if n := x.run.Exports; n > 0 {
		x.run.AgentHeapPerExport = float64(int64(heap())-int64(h0)) / float64(n)
	}
	for _, t := range snapshot.Types {
		x.run.Resources += x.sys.c.Len(model.Ingress, t)
	}
	for _, l := range x.sys.c.Resources(model.Ingress, resource.ListenerType) {
		x.run.ListenerBytes += len(l.GetResource().GetValue())
	}
	x.progress("%d exports (%d ingress resources, listeners %d B) served; agent heap %.0f B/export",
		x.run.Exports, x.run.Resources, x.run.ListenerBytes, x.run.AgentHeapPerExport)
}

// endpoint is a local endpoint no export had before.
func (x *ingressEnv) endpoint() model.LocalEndpoint {
	x.ipSeq++
	s := x.ipSeq
	return model.LocalEndpoint{Address: fmt.Sprintf("10.%d.%d.%d", 128|s>>16&0x7f, s>>8&0xff, s&0xff), Port: 8080}
}

// coldStart starts Envoy and waits until it applied every cluster and
// listener; its heap then is the figure of the run.
func (x *ingressEnv) coldStart(ctx context.Context, lis net.Listener, empty *IngressRun) error {
	// Envoy subscribes to the load assignments and secrets its clusters
	// and listeners name: every one active means it holds those too.
	counts := map[string]int{
		resource.ClusterType:  x.sys.c.Len(model.Ingress, resource.ClusterType),
		resource.ListenerType: x.sys.c.Len(model.Ingress, resource.ListenerType),
	}
	if err := x.fleet.expectSync(counts); err != nil {
		return err
	}
	t0 := time.Now()
	at, err := connectAll(x.fleet, x.events, fleetConfig{Addr: xds.Target(lis.Addr()), Delta: true, Nodes: []string{ingressNode}}, x.opts.WaitTimeout)
	if err != nil {
		return err
	}
	fig := &EnvoyFigures{}
	if err := x.fleet.figures(ctx, fig); err != nil {
		return err
	}
	fig.ColdRSSBytes, fig.ColdInitFetchTimeout = fig.EndRSSBytes, fig.InitFetchTimeout
	x.run.Envoy = fig
	run := x.run
	run.HeapBytes = fig.HeapBytes
	if run.Exports > 0 {
		run.ColdMs = ms(at.Sub(t0))
		run.HeapPerExport = float64(run.HeapBytes) / float64(run.Exports)
		if empty != nil && empty.Failed == "" && empty.HeapBytes > 0 {
			run.GrowthPerExport = float64(int64(run.HeapBytes)-int64(empty.HeapBytes)) / float64(run.Exports)
		}
	}
	if fig.UpdateRejected > 0 {
		x.errorf("cold start: Envoy rejected %d updates", fig.UpdateRejected)
	}
	x.progress("cold start %.0f ms; envoy heap %.1f MB (%.1f KB/export, %.1f KB/export over no export), RSS %.0f MB",
		run.ColdMs, float64(run.HeapBytes)/1e6, run.HeapPerExport/1024, run.GrowthPerExport/1024, float64(fig.ColdRSSBytes)/1e6)
	return nil
}

// exportSample is what one change cost.
type exportSample struct {
	latency, cpu time.Duration
	wire         int64
}

// changeSeries makes rounds of changes, one at a time, each of every kind:
// at least ingressLeast rounds, then until SingleBudget has passed, at
// most SingleChanges.
func (x *ingressEnv) changeSeries() {
	samples := map[string][]exportSample{}
	timedOut := map[string]int{}
	start := time.Now()
	least := min(ingressLeast, x.opts.SingleChanges)
series:
	for i := 0; i < x.opts.SingleChanges && (i < least || time.Since(start) < x.opts.SingleBudget); i++ {
		for _, k := range exportKinds {
			s, ok, err := x.change(k.name, k.types)
			if err != nil {
				x.errorf("%s: %v", k.name, err)
				break series
			}
			if !ok {
				timedOut[k.name]++
				x.errorf("%s of an export: not applied by Envoy within %s", k.name, x.opts.WaitTimeout)
				break series
			}
			samples[k.name] = append(samples[k.name], s)
		}
	}
	x.run.Changes = map[string]*ExportChanges{}
	for _, k := range exportKinds {
		x.run.Changes[k.name] = summarizeExportChanges(samples[k.name], timedOut[k.name])
	}
	for _, k := range exportKinds {
		c := x.run.Changes[k.name]
		x.progress("%s: applied p50 %.1f ms, p99 %.1f ms; agent CPU p50 %.2f ms, p99 %.2f ms; %.0f B to Envoy (p99 %.0f B); %d changes",
			k.name, c.Latency.P50, c.Latency.P99, c.CPUMs.P50, c.CPUMs.P99, c.WireBytes.P50, c.WireBytes.P99, c.Latency.Count)
	}
}

func summarizeExportChanges(ss []exportSample, timedOut int) *ExportChanges {
	lat := make([]time.Duration, len(ss))
	cpu := make([]float64, len(ss))
	wire := make([]float64, len(ss))
	for i, s := range ss {
		lat[i], cpu[i], wire[i] = s.latency, ms(s.cpu), float64(s.wire)
	}
	return &ExportChanges{Latency: summarize(lat, timedOut), CPUMs: spreadOf(cpu), WireBytes: spreadOf(wire)}
}

// change makes one change of kind in the catalog and waits until Envoy
// ACKed a response of each of types sent after it; ok is false when it
// did not within WaitTimeout.
func (x *ingressEnv) change(kind string, types []string) (s exportSample, ok bool, err error) {
	exports := x.draw(kind)
	x.changes++
	id := x.changes
	exps := make([]Expect, len(types))
	for i, t := range types {
		exps[i] = Expect{Change: id, Type: t}
	}
	if err := x.fleet.expect(exps); err != nil {
		return s, false, err
	}
	w0 := x.written.Load()
	x.cat.SetExports(exports)
	// From the catalog write on: the runner translates after its holdoff.
	u0 := cpuTime()
	t0 := time.Now()
	at, ok := x.events.wait([]uint64{id}, x.opts.WaitTimeout)[id]
	s = exportSample{latency: max(at.Sub(t0), 0), cpu: cpuTime() - u0, wire: x.written.Load() - w0}
	return s, ok, nil
}

// draw returns the exports after a change of kind: a new export added, the
// one added last removed, or the endpoint of one of the first N replaced.
func (x *ingressEnv) draw(kind string) []model.Export {
	switch kind {
	case ExportAdd:
		exp := benchExport(x.next, localTD, peerName, x.endpoint())
		x.next++
		x.added = exp.Name
		x.exports = append(x.exports, exp)
	case ExportRemove:
		x.exports = slices.DeleteFunc(x.exports, func(e model.Export) bool { return e.Name == x.added })
	case ExportEndpoints:
		i := x.rnd.IntN(x.run.Exports)
		// A copy: the catalog holds the ports of the one it has.
		exp := x.exports[i]
		exp.Ports = slices.Clone(exp.Ports)
		exp.Ports[0].Endpoints = []model.LocalEndpoint{x.endpoint()}
		x.exports[i] = exp
	}
	return x.exports
}

// finalCheck checks that Envoy holds what the cache serves, and reads its
// counters.
func (x *ingressEnv) finalCheck(ctx context.Context) error {
	st, err := x.fleet.stats()
	if err != nil {
		return err
	}
	for _, s := range st.StreamErrors {
		x.errorf("stream: %s", s)
	}
	if x.run.Check, err = settle(x.fleet, x.held, x.opts.WaitTimeout); err != nil {
		return err
	}
	problem, err := x.fleet.endFigures(ctx, x.run.Envoy, x.run.Check.OK())
	if err != nil {
		return err
	}
	if problem != "" {
		x.errorf("%s", problem)
	}
	verdict := "ok"
	if !x.run.Check.OK() {
		verdict = fmt.Sprintf("differs: %v", x.run.Check.Problems)
	}
	x.progress("config_dump check %s; %s", verdict, x.run.Envoy.summary())
	return nil
}

// held is what Envoy must hold of what the cache serves the ingress
// gateway: names, and the versions Envoy shows.
func (x *ingressEnv) held() checkWant {
	w := checkWant{Digests: map[string]map[string]uint64{}, Versions: map[string]map[string]string{}}
	for _, t := range snapshot.Types {
		w.Digests[t], w.Versions[t] = map[string]uint64{}, map[string]string{}
		for _, r := range x.sys.c.Resources(model.Ingress, t) {
			w.Digests[t][r.GetName()], w.Versions[t][r.GetName()] = 0, r.GetVersion()
		}
	}
	// Envoy shows the load assignment a cluster carries inline (the
	// router's) beside those of EDS, and asks for no secret while no
	// listener names one.
	for _, r := range x.sys.c.Resources(model.Ingress, resource.ClusterType) {
		c := &cluster.Cluster{}
		if err := r.GetResource().UnmarshalTo(c); err == nil && c.GetLoadAssignment() != nil {
			w.Digests[resource.EndpointType][r.GetName()] = 0
		}
	}
	if len(w.Digests[resource.ListenerType]) == 0 {
		clear(w.Digests[resource.SecretType])
	}
	return w
}
