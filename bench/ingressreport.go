package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// ingressFigure is a row of the ingress table.
type ingressFigure struct {
	label  string
	get    func(*IngressRun) (float64, bool)
	format string
}

// exportsOnly keeps a figure from the Envoy with no export, for which it
// means nothing.
func exportsOnly(get func(*IngressRun) float64) func(*IngressRun) (float64, bool) {
	return func(r *IngressRun) (float64, bool) { return get(r), r.Exports > 0 && r.Failed == "" }
}

func ingressEnvoy(get func(*EnvoyFigures) float64) func(*IngressRun) (float64, bool) {
	return func(r *IngressRun) (float64, bool) {
		if r.Envoy == nil || r.Failed != "" {
			return 0, false
		}
		return get(r.Envoy), true
	}
}

// exportChangeFigures are the rows of one kind of export change.
func exportChangeFigures(kind string) []ingressFigure {
	of := func(get func(*ExportChanges) float64) func(*IngressRun) (float64, bool) {
		return func(r *IngressRun) (float64, bool) {
			c := r.Changes[kind]
			if c == nil || c.Latency.Count == 0 {
				return 0, false
			}
			return get(c), true
		}
	}
	return []ingressFigure{
		{kind + ": changes measured", of(func(c *ExportChanges) float64 { return float64(c.Latency.Count) }), "%.0f"},
		{"  applied by Envoy p50 (ms)", of(func(c *ExportChanges) float64 { return c.Latency.P50 }), "%.1f"},
		{"  applied by Envoy p99 (ms)", of(func(c *ExportChanges) float64 { return c.Latency.P99 }), "%.1f"},
		{"  agent CPU p50 (ms)", of(func(c *ExportChanges) float64 { return c.CPUMs.P50 }), "%.2f"},
		{"  agent CPU p99 (ms)", of(func(c *ExportChanges) float64 { return c.CPUMs.P99 }), "%.2f"},
		{"  bytes to Envoy p50", of(func(c *ExportChanges) float64 { return c.WireBytes.P50 }), "%.0f"},
		{"  bytes to Envoy p99", of(func(c *ExportChanges) float64 { return c.WireBytes.P99 }), "%.0f"},
	}
}

func ingressFigures() []ingressFigure {
	out := []ingressFigure{
		{"Envoy heap after cold start (MB)", func(r *IngressRun) (float64, bool) { return float64(r.HeapBytes) / 1e6, r.Failed == "" }, "%.1f"},
		{"  per exported port (KB)", exportsOnly(func(r *IngressRun) float64 { return r.HeapPerExport / 1024 }), "%.1f"},
		{"  over no export, per exported port (KB)", exportsOnly(func(r *IngressRun) float64 { return r.GrowthPerExport / 1024 }), "%.1f"},
		{"Envoy RSS after cold start (MB)", ingressEnvoy(func(f *EnvoyFigures) float64 { return float64(f.ColdRSSBytes) / 1e6 }), "%.1f"},
		{"cold start (ms)", exportsOnly(func(r *IngressRun) float64 { return r.ColdMs }), "%.0f"},
		{"agent heap per export, no gateway (B)", exportsOnly(func(r *IngressRun) float64 { return r.AgentHeapPerExport }), "%.0f"},
		{"ingress listeners per export (B)", exportsOnly(func(r *IngressRun) float64 { return float64(r.ListenerBytes) / float64(r.Exports) }), "%.0f"},
	}
	for _, k := range exportKinds {
		out = append(out, exportChangeFigures(k.name)...)
	}
	return append(out,
		ingressFigure{"envoy update_rejected (all xDS types)", ingressEnvoy(func(f *EnvoyFigures) float64 { return float64(f.UpdateRejected) }), "%.0f"},
		ingressFigure{"envoy init_fetch_timeout (all xDS types)", ingressEnvoy(func(f *EnvoyFigures) float64 { return float64(f.InitFetchTimeout) }), "%.0f"},
		ingressFigure{"  of which in the cold start", ingressEnvoy(func(f *EnvoyFigures) float64 { return float64(f.ColdInitFetchTimeout) }), "%.0f"},
	)
}

// all is the Envoy with no export, then those with exports.
func (ir *IngressReport) all() []*IngressRun {
	var out []*IngressRun
	if ir.Empty != nil {
		out = append(out, ir.Empty)
	}
	return append(out, ir.Runs...)
}

// writeIngress writes the table of the ingress gateway, one column per N,
// then what went wrong in each run.
func (r *Report) writeIngress(w io.Writer) error {
	runs := r.Ingress.all()
	fmt.Fprintln(w, "\ningress gateway: one real Envoy (envoy-configs/ingress.yaml, 1 worker thread, delta ADS on a Unix socket); N exports of one port each, terminate mode, one consumer peer; single export changes, one at a time (each round adds an export, removes it, and changes another's endpoints); applied: ACKed on the ADS stream")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "figure\t"
	for _, run := range runs {
		header += fmt.Sprintf("N=%d\t", run.Exports)
	}
	fmt.Fprintln(tw, header)
	for _, f := range ingressFigures() {
		line, shown := f.label+"\t", false
		for _, run := range runs {
			if v, ok := f.get(run); ok {
				line += fmt.Sprintf(f.format, v) + "\t"
				shown = true
			} else {
				line += "-\t"
			}
		}
		if shown {
			fmt.Fprintln(tw, line)
		}
	}
	line := "config_dump check\t"
	for _, run := range runs {
		line += verdict(&RunResult{Check: run.Check, Failed: run.Failed}) + "\t"
	}
	fmt.Fprintln(tw, line)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, run := range runs {
		for _, e := range run.Errors {
			fmt.Fprintf(w, "  N=%d: %s\n", run.Exports, e)
		}
		if run.Failed != "" {
			fmt.Fprintf(w, "  N=%d FAILED: %s\n", run.Exports, run.Failed)
		}
	}
	return nil
}

// ingressTargets are the ingress Envoy's heap per exported port at 5,000
// exports (or the largest N measured), the export changes at the smallest
// and largest N (reported), and Envoy's rejections and initial fetch
// timeouts over every ingress run.
func (r *Report) ingressTargets() []Target {
	if r.Ingress == nil || len(r.Ingress.Runs) == 0 {
		return nil
	}
	var ok []*IngressRun
	for _, run := range r.Ingress.Runs {
		if run.Failed == "" {
			ok = append(ok, run)
		}
	}
	out := []Target{r.Ingress.heapTarget(ok)}
	if len(ok) > 0 {
		sizes := []*IngressRun{ok[0]}
		if last := ok[len(ok)-1]; last != ok[0] {
			sizes = append(sizes, last)
		}
		for _, run := range sizes {
			out = append(out, run.changeRows()...)
		}
	}
	return append(out, r.Ingress.counterTargets()...)
}

// heapTarget is the heap per exported port at 5,000 exports, or the
// largest N measured.
func (ir *IngressReport) heapTarget(ok []*IngressRun) Target {
	var run *IngressRun
	for _, x := range ok {
		switch {
		case run == nil, x.Exports == 5000:
			run = x
		case run.Exports != 5000 && x.Exports > run.Exports:
			run = x
		}
	}
	if run == nil {
		return Target{Name: "ingress Envoy heap per exported port", Want: "at most 60 KB", Measured: "failed: " + ir.Runs[0].Failed}
	}
	kb := run.HeapPerExport / 1024
	return Target{
		Name: fmt.Sprintf("ingress Envoy heap per exported port, N=%d", run.Exports), Want: "at most 60 KB",
		Measured: fmt.Sprintf("%.1f KB (%.1f KB over an Envoy with no export; heap %.0f MB)%s",
			kb, run.GrowthPerExport/1024, float64(run.HeapBytes)/1e6, missedBy(kb, 60, "KB")),
		Met: verdictOf(kb <= 60),
	}
}

// changeRows report each kind of export change at the run's N.
func (run *IngressRun) changeRows() []Target {
	var out []Target
	for _, k := range exportKinds {
		t := Target{Name: fmt.Sprintf("ingress: one export change (%s), N=%d, applied by the real Envoy", k.name, run.Exports), Want: "reported", Measured: "none measured"}
		if c := run.Changes[k.name]; c != nil && c.Latency.Count > 0 {
			t.Measured = fmt.Sprintf("p50 %.1f ms, p99 %.1f ms (%d changes)", c.Latency.P50, c.Latency.P99, c.Latency.Count)
			t.Note = fmt.Sprintf("agent CPU p50 %.2f ms, p99 %.2f ms; %.0f B to Envoy (p99 %.0f B)", c.CPUMs.P50, c.CPUMs.P99, c.WireBytes.P50, c.WireBytes.P99)
		}
		out = append(out, t)
	}
	return out
}

// counterTargets are the sums of Envoy's update_rejected and
// init_fetch_timeout over every ingress run.
func (ir *IngressReport) counterTargets() []Target {
	var rejected, timeouts, cold uint64
	for _, run := range ir.all() {
		if run.Envoy != nil {
			rejected += run.Envoy.UpdateRejected
			timeouts += run.Envoy.InitFetchTimeout
			cold += run.Envoy.ColdInitFetchTimeout
		}
	}
	return []Target{
		{Name: "  ingress Envoy update_rejected (every ingress run)", Want: "0", Measured: fmt.Sprint(rejected), Met: verdictOf(rejected == 0)},
		{Name: "  ingress Envoy init_fetch_timeout (every ingress run)", Want: "0", Measured: fmt.Sprint(timeouts), Met: verdictOf(timeouts == 0),
			Note: fmt.Sprintf("%d in the cold starts, %d after changes", cold, timeouts-cold)},
	}
}
