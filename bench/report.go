package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// find returns the run of a system in a mode at N and M with simulated
// gateways, if any.
func (r *Report) find(system, mode string, n, m int) *RunResult {
	return r.findKind(KindSimulated, system, mode, n, m)
}

// findKind returns the run of a system in a mode at N and M with gateways
// of a kind, if any.
func (r *Report) findKind(kind, system, mode string, n, m int) *RunResult {
	for _, run := range r.Runs {
		if kindOf(run) == kind && run.System == system && run.Mode == mode && run.Services == n && run.Gateways == m {
			return run
		}
	}
	return nil
}

type figure struct {
	label string
	get   func(*RunResult) (float64, bool)
	// format of the value; ratios are shown for numeric figures only.
	format string
}

func latency(w func(*RunResult) *Workload, q func(Latency) float64) func(*RunResult) (float64, bool) {
	return func(r *RunResult) (float64, bool) {
		wl := w(r)
		if wl == nil || wl.Latency.Count == 0 {
			return 0, false
		}
		return q(wl.Latency), true
	}
}

func phase(p func(*RunResult) *Phase) func(*RunResult) (float64, bool) {
	return func(r *RunResult) (float64, bool) {
		ph := p(r)
		if ph == nil || ph.TimedOut {
			return 0, false
		}
		return ph.Ms, true
	}
}

func single(r *RunResult) *Workload { return r.Single }
func churnW(r *RunResult) *Workload { return r.Churn }
func burstW(r *RunResult) *Workload { return r.Burst }
func p50(l Latency) float64         { return l.P50 }
func p99(l Latency) float64         { return l.P99 }
func maxL(l Latency) float64        { return l.Max }

func scoped(sc string, q func(Latency) float64) func(*RunResult) (float64, bool) {
	return func(r *RunResult) (float64, bool) {
		if r.Single == nil {
			return 0, false
		}
		l, ok := r.Single.ByScope[sc]
		if !ok || l.Count == 0 {
			return 0, false
		}
		return q(l), true
	}
}

func spentOn(w func(*RunResult) *Workload, sc string, f func(Cost) float64) func(*RunResult) (float64, bool) {
	return func(r *RunResult) (float64, bool) {
		wl := w(r)
		if wl == nil {
			return 0, false
		}
		c := wl.Cost
		if sc != "" {
			var ok bool
			if c, ok = wl.CostByScope[sc]; !ok {
				return 0, false
			}
		}
		if c.Updates == 0 {
			return 0, false
		}
		return f(c), true
	}
}

func cpuMs(c Cost) float64  { return c.CPUMs }
func allocs(c Cost) float64 { return c.Allocs }
func wireB(c Cost) float64  { return c.WireBytes }

// simulatedOnly drops a figure from real-Envoy runs, which do not read their
// gateways' connections.
func envoyFigure(f func(*EnvoyFigures) float64) func(*RunResult) (float64, bool) {
	return func(r *RunResult) (float64, bool) {
		if r.Envoy == nil || r.Failed != "" {
			return 0, false
		}
		return f(r.Envoy), true
	}
}

func simulatedOnly(get func(*RunResult) (float64, bool)) func(*RunResult) (float64, bool) {
	return func(r *RunResult) (float64, bool) {
		if r.Kind == KindEnvoy {
			return 0, false
		}
		return get(r)
	}
}

var figures = []figure{
	{"single changes measured", func(r *RunResult) (float64, bool) {
		if r.Single == nil {
			return 0, false
		}
		return float64(r.Single.Latency.Count), true
	}, "%.0f"},
	{"single change p50 (ms)", latency(single, p50), "%.2f"},
	{"single change p99 (ms)", latency(single, p99), "%.2f"},
	{"single change max (ms)", latency(single, maxL), "%.2f"},
	{"  endpoint changes p50 (ms)", scoped(ScopeEndpoints, p50), "%.2f"},
	{"  endpoint changes p99 (ms)", scoped(ScopeEndpoints, p99), "%.2f"},
	{"  cluster/listener changes p99 (ms)", scoped(ScopeCluster, p99), "%.2f"},
	{"  route changes p99 (ms)", scoped(ScopeRoute, p99), "%.2f"},
	{"churn p50 (ms)", latency(churnW, p50), "%.2f"},
	{"churn p99 (ms)", latency(churnW, p99), "%.2f"},
	{"burst p99 (ms)", latency(burstW, p99), "%.1f"},
	{"burst: all held after (ms)", func(r *RunResult) (float64, bool) {
		if r.Burst == nil || r.Burst.Latency.Count == 0 {
			return 0, false
		}
		return r.Burst.AllMs, true
	}, "%.0f"},
	{"cold start of M (ms)", phase(func(r *RunResult) *Phase { return r.Cold }), "%.0f"},
	{"reconnect storm (ms)", phase(func(r *RunResult) *Phase { return r.Storm }), "%.0f"},
	{"cold start CPU (ms)", func(r *RunResult) (float64, bool) {
		if r.Cold == nil {
			return 0, false
		}
		return r.Cold.CPUMs, true
	}, "%.0f"},
	{"  of the gateways' process (ms)", func(r *RunResult) (float64, bool) {
		if r.Cold == nil || r.HeapIncludesClients {
			return 0, false
		}
		return r.Cold.GatewaysCPUMs, true
	}, "%.0f"},
	{"CPU per update, single (ms)", spentOn(single, "", cpuMs), "%.3f"},
	{"  per endpoint change (ms)", spentOn(single, ScopeEndpoints, cpuMs), "%.3f"},
	{"  per route change (ms)", spentOn(single, ScopeRoute, cpuMs), "%.3f"},
	{"  of the gateways' process (ms)", func(r *RunResult) (float64, bool) {
		if r.HeapIncludesClients {
			return 0, false // one process: the figure above has it all
		}
		return spentOn(single, "", func(c Cost) float64 { return c.GatewaysCPUMs })(r)
	}, "%.3f"},
	{"CPU per update, churn (ms)", spentOn(churnW, "", cpuMs), "%.3f"},
	{"CPU per update, burst (ms)", spentOn(burstW, "", cpuMs), "%.3f"},
	{"allocations per update, single", spentOn(single, "", allocs), "%.0f"},
	{"  per endpoint change", spentOn(single, ScopeEndpoints, allocs), "%.0f"},
	{"wire bytes per update per gateway", simulatedOnly(spentOn(single, "", wireB)), "%.0f"},
	{"  per endpoint change", simulatedOnly(spentOn(single, ScopeEndpoints, wireB)), "%.0f"},
	{"  per route change", simulatedOnly(spentOn(single, ScopeRoute, wireB)), "%.0f"},
	{"cold start wire bytes per gateway", simulatedOnly(func(r *RunResult) (float64, bool) {
		if r.Cold == nil {
			return 0, false
		}
		return r.Cold.WireBytesPerGateway, true
	}), "%.0f"},
	{"storm wire bytes per gateway", func(r *RunResult) (float64, bool) {
		if r.Storm == nil || r.Storm.TimedOut {
			return 0, false
		}
		return r.Storm.WireBytesPerGateway, true
	}, "%.0f"},
	{"heap per service, no gateway (B)", func(r *RunResult) (float64, bool) { return r.HeapPerService, r.Failed == "" }, "%.0f"},
	{"heap per gateway per resource (B)", func(r *RunResult) (float64, bool) {
		return r.HeapPerGatewayPerResource, r.Cold != nil
	}, "%.1f"},
	{"NACKs", func(r *RunResult) (float64, bool) { return float64(r.NACKs), r.Failed == "" }, "%.0f"},
	{"envoy update_rejected (all xDS types)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.UpdateRejected) }), "%.0f"},
	{"envoy init_fetch_timeout (all xDS types)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.InitFetchTimeout) }), "%.0f"},
	{"  of which in the cold start", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.ColdInitFetchTimeout) }), "%.0f"},
	{"envoy cds updates applied (stats)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.CDSUpdates) }), "%.0f"},
	{"  cluster changes ACKed x M", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.ClusterChanges) }), "%.0f"},
	{"envoy lds updates applied (stats)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.LDSUpdates) }), "%.0f"},
	{"  listener changes ACKed x M", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.ListenerChanges) }), "%.0f"},
	{"envoy heap after cold start, largest (MB)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.ColdHeapBytes) / 1e6 }), "%.1f"},
	{"  per imported service (KB)", func(r *RunResult) (float64, bool) {
		if r.Envoy == nil || r.Failed != "" || r.Envoy.ColdHeapBytes == 0 {
			return 0, false
		}
		return heapPerServiceKB(r), true
	}, "%.1f"},
	{"envoy RSS after cold start, largest (MB)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.ColdRSSBytes) / 1e6 }), "%.1f"},
	{"envoy RSS at the end, largest (MB)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.EndRSSBytes) / 1e6 }), "%.1f"},
	{"envoy heap allocated at the end, largest (MB)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.HeapBytes) / 1e6 }), "%.1f"},
	{"envoys refusing requests (overload manager)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.Overloaded) }), "%.0f"},
	{"control plane RSS at the end (MB)", envoyFigure(func(f *EnvoyFigures) float64 { return float64(f.ControlPlaneRSSBytes) / 1e6 }), "%.1f"},
}

// WriteTable writes the figures of every N, M and mode, each system in a
// column, with the ratio meshfed/baseline for each baseline.
// simulated is the report with the runs of simulated gateways only.
func (r *Report) simulated() *Report {
	s := *r
	s.Runs = slices.DeleteFunc(slices.Clone(r.Runs), func(run *RunResult) bool { return kindOf(run) != KindSimulated })
	return &s
}

// kindOf is the kind of a run's gateways; reports written before runs had
// a kind have simulated ones.
func kindOf(run *RunResult) string {
	if run.Kind == "" {
		return KindSimulated
	}
	return run.Kind
}

func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "meshfed-bench: %s\n", r.Command)
	fmt.Fprintf(w, "host: %s, %d CPUs (GOMAXPROCS %d), %s %s/%s; %.0f s\n", r.Host.CPUModel, r.Host.CPUs, r.Host.GOMAXPROCS, r.Host.GoVersion, r.Host.OS, r.Host.Arch, r.Seconds)
	fmt.Fprintf(w, "plans: %s gateways (the ingress gateway, when measured, has a table of its own); meshfed runner holdoff %.0f ms; catalog store in %s; gateways in a %s; churn %.0f/s for %g s (80%% endpoints, 15%% edits, 5%% adds/removes); burst %.0f%% of N in 1 s; %.0f%% TCP services\n",
		r.Settings.Role, r.Settings.HoldoffMs, r.Settings.StoreDir, r.Settings.Clients, r.Settings.ChurnRate, r.Settings.ChurnSeconds, 100*r.Settings.BurstFraction, 100*r.Settings.TCPShare)
	fmt.Fprintln(w, "single changes follow the churn mix, one at a time, in the same order for every system; a system that takes longer measures fewer of them (see the count), so compare the per-scope rows")
	var blocks []tableBlock
	var systems []string
	for _, run := range r.Runs {
		b := tableBlock{kindOf(run), run.Services, run.Gateways, run.Mode}
		if !slices.Contains(blocks, b) {
			blocks = append(blocks, b)
		}
		if !slices.Contains(systems, run.System) {
			systems = append(systems, run.System)
		}
	}
	slices.SortStableFunc(systems, func(a, b string) int {
		return cmp.Compare(slices.Index(Systems, a), slices.Index(Systems, b))
	})
	baselines := slices.DeleteFunc(slices.Clone(systems), func(s string) bool { return s == SystemMeshfed })
	hasMeshfed := slices.Contains(systems, SystemMeshfed)
	for _, b := range blocks {
		if err := r.writeBlock(w, b, systems, baselines, hasMeshfed); err != nil {
			return err
		}
	}
	if r.Ingress != nil {
		if err := r.writeIngress(w); err != nil {
			return err
		}
	}
	if r.DataPath != nil {
		if err := r.writeDataPath(w); err != nil {
			return err
		}
	}
	if r.Sync != nil {
		if err := r.writeSync(w); err != nil {
			return err
		}
	}
	return r.WriteTargets(w)
}

// tableBlock is one table of the report: the runs of one kind, size and
// mode, one column per system.
type tableBlock struct {
	kind string
	n, m int
	mode string
}

// writeBlock writes the table of one block, then what went wrong in it.
func (r *Report) writeBlock(w io.Writer, b tableBlock, systems, baselines []string, hasMeshfed bool) error {
	gws := "gateways"
	if b.kind == KindEnvoy {
		gws = "real Envoy gateways (applied: ACKed on the ADS stream, cross-checked with Envoy's stats and config_dump)"
	}
	fmt.Fprintf(w, "\nN=%d services, M=%d %s, %s\n", b.n, b.m, gws, b.mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "figure\t"
	for _, s := range systems {
		header += s + "\t"
	}
	if hasMeshfed {
		for _, s := range baselines {
			header += "meshfed/" + s + "\t"
		}
	}
	fmt.Fprintln(tw, header)
	runs := map[string]*RunResult{}
	for _, s := range systems {
		runs[s] = r.findKind(b.kind, s, b.mode, b.n, b.m)
	}
	for _, f := range figures {
		if f.label == "single changes measured" {
			// A count, not a figure to compare: no ratio.
			line := f.label + "\t"
			for _, s := range systems {
				if v, ok := get(f, runs[s]); ok {
					line += fmt.Sprintf(f.format, v) + "\t"
				} else {
					line += "-\t"
				}
			}
			fmt.Fprintln(tw, line)
			continue
		}
		line := f.label + "\t"
		vals := map[string]float64{}
		for _, s := range systems {
			v, ok := get(f, runs[s])
			if !ok {
				line += "-\t"
				continue
			}
			vals[s] = v
			line += fmt.Sprintf(f.format, v) + "\t"
		}
		if len(vals) == 0 {
			continue // not measured in this block
		}
		if hasMeshfed {
			for _, s := range baselines {
				line += ratio(vals, SystemMeshfed, s) + "\t"
			}
		}
		fmt.Fprintln(tw, line)
	}
	line := "final state check\t"
	for _, s := range systems {
		line += verdict(runs[s]) + "\t"
	}
	fmt.Fprintln(tw, line)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range systems {
		if run := runs[s]; run != nil {
			for _, e := range run.Errors {
				fmt.Fprintf(w, "  %s: %s\n", s, e)
			}
			if run.Failed != "" {
				fmt.Fprintf(w, "  %s FAILED: %s\n", s, run.Failed)
			}
			if len(run.Check.Problems) > 0 {
				fmt.Fprintf(w, "  %s final state: %s\n", s, strings.Join(run.Check.Problems, "; "))
			}
		}
	}
	return nil
}

// writeSync writes the table of the catalog syncs.
func (r *Report) writeSync(w io.Writer) error {
	fmt.Fprintf(w, "\ncatalog sync between two agents (mutual TLS, consumer store in %s)\n", r.Sync.StoreDir)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "link\tservices\twindow\tms\tms/service\t")
	for _, s := range r.Sync.Runs {
		ms, perService := s.outcome()
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t\n", s.Link, s.Services, s.Window, ms, perService)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Sync.NetemSkipped != "" {
		fmt.Fprintf(w, "over a link with added latency: skipped: %s\n", r.Sync.NetemSkipped)
	}
	return nil
}

func get(f figure, run *RunResult) (float64, bool) {
	if run == nil {
		return 0, false
	}
	return f.get(run)
}

func ratio(vals map[string]float64, a, b string) string {
	x, okA := vals[a]
	y, okB := vals[b]
	switch {
	case !okA || !okB:
		return "-"
	case y == 0 && x == 0:
		return "="
	case y == 0:
		return "inf"
	}
	q := x / y
	if q < 0.01 {
		return fmt.Sprintf("%.4f", q)
	}
	return fmt.Sprintf("%.2f", q)
}

func verdict(run *RunResult) string {
	switch {
	case run == nil:
		return "-"
	case run.Failed != "":
		return "FAILED"
	case run.Check.OK() && run.Check.Stale > 0:
		return fmt.Sprintf("ok (%d stale)", run.Check.Stale)
	case run.Check.OK():
		return "ok"
	}
	return fmt.Sprintf("%d/%d differ", run.Check.Mismatched, run.Check.Gateways)
}

// Write writes the report under dir: meshfed-bench.json, meshfed-bench.txt
// (the table), and the latency, latency-route and cpu plots in SVG and PNG
// (against N, per system and mode). It returns the files written.
func (r *Report) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	jsonPath := filepath.Join(dir, "meshfed-bench.json")
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	files = append(files, jsonPath)
	var sb strings.Builder
	if err := r.WriteTable(&sb); err != nil {
		return files, err
	}
	txtPath := filepath.Join(dir, "meshfed-bench.txt")
	if err := os.WriteFile(txtPath, []byte(sb.String()), 0o644); err != nil {
		return files, err
	}
	return append(files, txtPath), nil
}
