package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// Target is one of the numbers meshfed is built for (docs: "The numbers we
// build for"), as measured by a report.
type Target struct {
	Name     string `json:"name"`
	Want     string `json:"want"`
	Measured string `json:"measured"`
	// Met is nil when the report lacks the runs to tell.
	Met  *bool  `json:"met,omitempty"`
	Note string `json:"note,omitempty"`
}

func verdictOf(ok bool) *bool { return &ok }

// evaluate measures the report against the architecture's numbers, with
// what it has: each target names the runs it needs.
func (r *Report) evaluate() []Target {
	out := r.simulated().evaluateSimulated()
	out = append(out, r.envoyTargets()...)
	out = append(out, r.ingressTargets()...)
	return append(out, r.dataPathTargets()...)
}

// evaluateSimulated measures the runs of simulated gateways.
func (r *Report) evaluateSimulated() []Target {
	if len(r.Runs) == 0 {
		return r.syncTargets()
	}
	maxM := 0
	for _, run := range r.Runs {
		maxM = max(maxM, run.Gateways)
	}

	out := r.changeTargets(maxM)
	out = append(out, r.workTargets()...)
	out = append(out, r.memoryTargets()...)
	return append(out, r.syncTargets()...)
}

// maxServices is the most services of a run pred holds for that did not
// fail.
func (r *Report) maxServices(pred func(*RunResult) bool) int {
	n := 0
	for _, run := range r.Runs {
		if pred(run) && run.Failed == "" {
			n = max(n, run.Services)
		}
	}
	return n
}

// changeTargets are the rows of one change at 10,000 services and the
// most gateways, each kind of change beside the baselines.
func (r *Report) changeTargets(maxM int) []Target {
	var out []Target
	// One change at 10,000 services and 100 gateways (or the largest
	// measured), delta.
	n := 10000
	if r.find(SystemMeshfed, ModeDelta, n, maxM) == nil {
		n = r.maxServices(func(run *RunResult) bool {
			return run.System == SystemMeshfed && run.Mode == ModeDelta && run.Gateways == maxM
		})
	}
	mf := r.find(SystemMeshfed, ModeDelta, n, maxM)
	name := fmt.Sprintf("one change, N=%d, M=%d, delta: every gateway ACKed", n, maxM)
	if mf == nil || mf.Single == nil || mf.Single.Latency.Count == 0 {
		out = append(out, Target{Name: name, Want: "p99 < 20 ms", Measured: "not run"})
	} else {
		l := mf.Single.Latency
		t := Target{Name: name, Want: "p99 < 20 ms", Measured: fmt.Sprintf("p99 %.1f ms (p50 %.1f ms, %d changes of the churn mix)%s", l.P99, l.P50, l.Count, missedBy(l.P99, 20, "ms")), Met: verdictOf(l.P99 < 20)}
		out = append(out, t)
		// Every kind of change, each beside LinearCache.
		linear := r.find(SystemLinear, ModeDelta, n, maxM)
		for _, sc := range Scopes {
			sl, ok := mf.Single.ByScope[sc]
			if !ok || sl.Count == 0 {
				out = append(out, Target{Name: fmt.Sprintf("  %s changes", scopeLabel(sc)), Want: "p99 < 20 ms", Measured: "none measured"})
				continue
			}
			st := Target{Name: fmt.Sprintf("  %s changes", scopeLabel(sc)), Want: "p99 < 20 ms",
				Measured: fmt.Sprintf("p99 %.1f ms (%d)%s", sl.P99, sl.Count, missedBy(sl.P99, 20, "ms")), Met: verdictOf(sl.P99 < 20)}
			out = append(out, st)
			vt := Target{Name: fmt.Sprintf("  %s changes vs linear delta", scopeLabel(sc)), Want: "at least 60x faster (p99)", Measured: "not run"}
			if linear != nil && linear.Single != nil {
				if bl, ok := linear.Single.ByScope[sc]; ok && bl.Count > 0 && sl.P99 > 0 {
					q := bl.P99 / sl.P99
					vt.Measured = fmt.Sprintf("%.1fx (p99 %.1f ms vs %.1f ms)", q, sl.P99, bl.P99)
					if q < 60 {
						vt.Measured += fmt.Sprintf("; missed by %.0fx", 60/q)
						vt.Note = r.fanOutFloor(n, maxM, bl.P99, 60)
					}
					vt.Met = verdictOf(q >= 60)
				}
			}
			out = append(out, vt)
		}
		for _, b := range []struct {
			sys, mode string
			times     float64
		}{{SystemLinear, ModeDelta, 60}, {SystemSnapshot, ModeSotw, 240}, {SystemSnapshot, ModeDelta, 240}} {
			base := r.find(b.sys, b.mode, n, maxM)
			bname := fmt.Sprintf("  vs %s %s, same N and M", b.sys, b.mode)
			if base == nil || base.Single == nil || base.Single.Latency.Count == 0 {
				out = append(out, Target{Name: bname, Want: fmt.Sprintf("at least %.0fx faster (p99)", b.times), Measured: "not run"})
				continue
			}
			q := base.Single.Latency.P99 / l.P99
			t := Target{Name: bname, Want: fmt.Sprintf("at least %.0fx faster (p99)", b.times),
				Measured: fmt.Sprintf("%.1fx (p99 %.1f ms vs %.1f ms)", q, l.P99, base.Single.Latency.P99), Met: verdictOf(q >= b.times)}
			if q < b.times {
				t.Measured += fmt.Sprintf("; missed by %.1fx", b.times/q)
			}
			if bl, ok := base.Single.ByScope[ScopeEndpoints]; ok {
				if ml, ok := mf.Single.ByScope[ScopeEndpoints]; ok && ml.P99 > 0 {
					t.Note = fmt.Sprintf("endpoint changes: %.1fx (p99 %.1f ms vs %.1f ms)", bl.P99/ml.P99, ml.P99, bl.P99)
				}
			}
			if q < b.times {
				t.Note = strings.Join(slices.DeleteFunc([]string{t.Note, r.fanOutFloor(n, maxM, base.Single.Latency.P99, b.times)}, func(s string) bool { return s == "" }), "; ")
			}
			out = append(out, t)
		}
	}
	return out
}

// fanOutFloor says what being times faster than a baseline whose p99 is
// baseP99 needs, beside the least any cache takes here. LinearCache's work
// for one change grows with the resources of the changed type, so what it
// still takes at a small N is what every cache pays to reach M gateways
// and have them ACK. No cache goes under that floor: when the baseline is
// fewer than times floors, the ratio cannot be met on this machine.
func (r *Report) fanOutFloor(n, m int, baseP99, times float64) string {
	var floor *RunResult
	for _, run := range r.Runs {
		if kindOf(run) == KindSimulated && run.System == SystemLinear && run.Mode == ModeDelta && run.Gateways == m &&
			run.Services < n && run.Failed == "" && run.Single != nil && run.Single.Latency.Count > 0 &&
			(floor == nil || run.Services < floor.Services) {
			floor = run
		}
	}
	if floor == nil {
		return ""
	}
	l := floor.Single.Latency
	return fmt.Sprintf("%.0fx needs p99 %.1f ms; the fan-out floor (linear delta at N=%d, M=%d) is p50 %.1f ms, p99 %.1f ms",
		times, baseP99/times, floor.Services, m, l.P50, l.P99)
}

// workTargets say whether the work of one change grows with the catalog.
func (r *Report) workTargets() []Target {
	var out []Target
	// The work of one change does not grow with the catalog.
	for _, m := range gatewayCounts(r) {
		lo, hi := 0, 0
		for _, run := range r.Runs {
			if run.System == SystemMeshfed && run.Mode == ModeDelta && run.Gateways == m && run.Single != nil && run.Failed == "" {
				if lo == 0 || run.Services < lo {
					lo = run.Services
				}
				hi = max(hi, run.Services)
			}
		}
		if lo == 0 || lo == hi {
			continue
		}
		a, b := r.find(SystemMeshfed, ModeDelta, lo, m), r.find(SystemMeshfed, ModeDelta, hi, m)
		// Every kind of change, each its own row.
		for _, sc := range Scopes {
			ca, okA := a.Single.CostByScope[sc]
			cb, okB := b.Single.CostByScope[sc]
			t := Target{Name: fmt.Sprintf("work of one %s change, N=%d vs N=%d, M=%d, delta", scopeLabel(sc), hi, lo, m), Want: "at most 2x (architecture: 100,000 vs 1,000)"}
			if okA && okB && ca.CPUMs > 0 {
				q := cb.CPUMs / ca.CPUMs
				t.Measured = fmt.Sprintf("CPU %.2fx (%.3f vs %.3f ms), allocations %.2fx%s", q, cb.CPUMs, ca.CPUMs, cb.Allocs/max(ca.Allocs, 1), missedBy(q, 2, "x"))
				t.Met = verdictOf(q <= 2)
			} else {
				t.Measured = fmt.Sprintf("no %s change measured at both sizes", scopeLabel(sc))
			}
			out = append(out, t)
		}
	}
	return out
}

// memoryTargets are the heap rows.
func (r *Report) memoryTargets() []Target {
	var out []Target
	// Memory.
	if n := r.maxServices(func(run *RunResult) bool { return run.System == SystemMeshfed }); n > 0 {
		var run *RunResult
		for _, x := range r.Runs {
			if x.System == SystemMeshfed && x.Services == n && x.Failed == "" && (run == nil || x.Gateways > run.Gateways) {
				run = x
			}
		}
		out = append(out, Target{
			Name: fmt.Sprintf("heap per imported service, N=%d", n), Want: "at most 4096 B",
			Measured: fmt.Sprintf("%.0f B (catalog %.0f B, translation and cache %.0f B)%s", run.HeapPerService, run.CatalogHeapPerService, run.HeapPerService-run.CatalogHeapPerService, missedBy(run.HeapPerService, 4096, "B")),
			Met:      verdictOf(run.HeapPerService <= 4096),
		})
		t := Target{
			Name: fmt.Sprintf("per-gateway state, N=%d, M=%d, %s", n, run.Gateways, run.Mode), Want: "at most 16 B per resource",
			Measured: fmt.Sprintf("%.1f B per resource (%.0f B per gateway)%s", run.HeapPerGatewayPerResource, run.HeapPerGateway, missedBy(run.HeapPerGatewayPerResource, 16, "B")),
			Met:      verdictOf(run.HeapPerGatewayPerResource <= 16),
		}
		if run.HeapIncludesClients {
			t.Note = "includes the simulated gateways, run in process"
		}
		out = append(out, t)
	}
	return out
}

// syncTargets are the catalog sync at 10,000 services (or the largest N
// measured): under 1 s on loopback and under 5 s at 50 ms RTT with the
// extensions negotiated (plain Hamlet, window 1, is reported beside them,
// with no target).
func (r *Report) syncTargets() []Target {
	if r.Sync == nil {
		return nil
	}
	// At 10,000 services, or the largest N measured.
	n := 0
	for _, s := range r.Sync.Runs {
		if n != 10000 {
			n = max(n, s.Services)
		}
		if s.Services == 10000 {
			n = 10000
		}
	}
	var out []Target
	for _, s := range r.Sync.Runs {
		if s.Services != n {
			continue
		}
		var t Target
		limit := 0.0
		switch {
		case s.Link == "loopback":
			t = Target{Name: fmt.Sprintf("sync of %d services on loopback, %s", n, s.setting()), Want: "reported (the specification's window)"}
			if s.Window > 1 {
				limit = 1
				t.Want = "under 1 s"
			}
		case strings.HasPrefix(s.Link, "loopback+proxy") || strings.HasPrefix(s.Link, "veth + netem"):
			t = Target{Name: fmt.Sprintf("sync of %d services, %s, %s", n, s.Link, s.setting()), Want: "reported (the specification's window)"}
			if s.Window > 1 {
				limit = 5
				t.Want = "under 5 s"
			}
		default:
			continue
		}
		switch {
		case s.Error != "":
			t.Measured = "failed: " + s.Error
		default:
			t.Measured = fmt.Sprintf("%.2f s", s.Ms/1000)
			if s.Extrapolated {
				t.Measured += fmt.Sprintf(" (extrapolated from %d services)", s.Imported)
			}
			if limit > 0 {
				t.Measured += missedBy(s.Ms/1000, limit, "s")
				t.Met = verdictOf(s.Ms < limit*1000)
			}
		}
		out = append(out, t)
	}
	return out
}

func gatewayCounts(r *Report) []int {
	var out []int
	for _, run := range r.Runs {
		if !slices.Contains(out, run.Gateways) {
			out = append(out, run.Gateways)
		}
	}
	slices.Sort(out)
	return out
}

// WriteTargets writes the targets as a table.
func (r *Report) WriteTargets(w io.Writer) error {
	ts := r.Targets
	if ts == nil {
		ts = r.evaluate()
	}
	if len(ts) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\ntargets (architecture: the numbers we build for)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range ts {
		v := "?"
		if t.Met != nil {
			v = "MISSED"
			if *t.Met {
				v = "met"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", t.Name, t.Want, v, t.Measured)
		if t.Note != "" {
			fmt.Fprintf(tw, "\t\t\t%s\t\n", t.Note)
		}
	}
	return tw.Flush()
}

// envoyTargets measures the runs of real Envoy gateways: at the largest N
// (and then M) measured, meshfed's single changes until every Envoy
// applied them, beside the baselines of the same run, and Envoy's own
// rejection and initial fetch timeout counters.
func (r *Report) envoyTargets() []Target {
	var mf *RunResult
	for _, run := range r.Runs {
		if kindOf(run) != KindEnvoy || run.System != SystemMeshfed || run.Mode != ModeDelta || run.Failed != "" {
			continue
		}
		if mf == nil || run.Services > mf.Services || run.Services == mf.Services && run.Gateways > mf.Gateways {
			mf = run
		}
	}
	if mf == nil {
		return nil
	}
	var out []Target
	name := fmt.Sprintf("real Envoy, N=%d, M=%d, delta: one change applied by every Envoy", mf.Services, mf.Gateways)
	t := Target{Name: name, Want: "p99 < 50 ms", Measured: "not run"}
	if mf.Single != nil && mf.Single.Latency.Count > 0 {
		l := mf.Single.Latency
		t.Measured = fmt.Sprintf("p99 %.1f ms (p50 %.1f ms, %d changes)%s", l.P99, l.P50, l.Count, missedBy(l.P99, 50, "ms"))
		t.Met = verdictOf(l.P99 < 50)
		var parts []string
		for _, sc := range Scopes {
			if sl, ok := mf.Single.ByScope[sc]; ok {
				parts = append(parts, fmt.Sprintf("%s: p99 %.1f ms (%d)", sc, sl.P99, sl.Count))
			}
		}
		for _, sys := range []string{SystemSnapshot, SystemLinear} {
			if b := r.findKind(KindEnvoy, sys, ModeDelta, mf.Services, mf.Gateways); b != nil && b.Single != nil && b.Single.Latency.Count > 0 {
				parts = append(parts, fmt.Sprintf("%s: p99 %.1f ms", sys, b.Single.Latency.P99))
			}
		}
		t.Note = strings.Join(parts, "; ")
	}
	out = append(out, t)
	if mf.Envoy != nil && mf.Envoy.ColdHeapBytes > 0 {
		kb := heapPerServiceKB(mf)
		out = append(out, Target{
			Name: fmt.Sprintf("  Envoy heap per imported service, N=%d", mf.Services), Want: "at most 40 KB",
			Measured: fmt.Sprintf("%.1f KB (largest heap %.0f MB after the cold start)%s", kb, float64(mf.Envoy.ColdHeapBytes)/1e6, missedBy(kb, 40, "KB")),
			Met:      verdictOf(kb <= 40),
		})
	}
	for _, sc := range Scopes {
		if mf.Single == nil {
			break
		}
		sl, ok := mf.Single.ByScope[sc]
		if !ok || sl.Count == 0 {
			continue
		}
		st := Target{Name: fmt.Sprintf("  %s changes, real Envoy", scopeLabel(sc)), Want: "p99 < 50 ms",
			Measured: fmt.Sprintf("p99 %.1f ms (%d)%s", sl.P99, sl.Count, missedBy(sl.P99, 50, "ms")), Met: verdictOf(sl.P99 < 50)}
		if b := r.findKind(KindEnvoy, SystemLinear, ModeDelta, mf.Services, mf.Gateways); b != nil && b.Single != nil {
			if bl, ok := b.Single.ByScope[sc]; ok && bl.Count > 0 && sl.P99 > 0 {
				st.Note = fmt.Sprintf("linear: p99 %.1f ms (%.1fx)", bl.P99, bl.P99/sl.P99)
			}
		}
		out = append(out, st)
	}
	for _, sys := range Systems {
		run := r.findKind(KindEnvoy, sys, ModeDelta, mf.Services, mf.Gateways)
		if run == nil || run.Envoy == nil || run.Failed != "" {
			continue
		}
		for _, c := range []struct {
			name string
			v    uint64
			note string
		}{
			{"Envoy update_rejected (sum over Envoys and xDS types)", run.Envoy.UpdateRejected, ""},
			{"Envoy init_fetch_timeout (sum over Envoys and xDS types)", run.Envoy.InitFetchTimeout,
				fmt.Sprintf("%d in the cold start, %d after changes", run.Envoy.ColdInitFetchTimeout, run.Envoy.InitFetchTimeout-run.Envoy.ColdInitFetchTimeout)},
			{"Envoys refusing requests (overload manager)", uint64(run.Envoy.Overloaded), fmt.Sprintf("largest Envoy heap %.0f MB", float64(run.Envoy.HeapBytes)/1e6)},
		} {
			out = append(out, Target{
				Name: fmt.Sprintf("  %s, %s", c.name, sys), Want: "0",
				Measured: fmt.Sprint(c.v), Met: verdictOf(c.v == 0), Note: c.note,
			})
		}
	}
	return out
}

// missedBy says by how much a measure is over its limit, or nothing.
func missedBy(v, limit float64, unit string) string {
	if v <= limit {
		return ""
	}
	if unit == "x" {
		return fmt.Sprintf("; missed by %.2fx", v/limit)
	}
	return fmt.Sprintf("; missed by %.1f %s (%.1fx the limit)", v-limit, unit, v/limit)
}

// scopeLabel names a scope in the targets.
func scopeLabel(sc string) string {
	switch sc {
	case ScopeEndpoints:
		return "endpoint"
	case ScopeCluster:
		return "cluster/listener"
	case ScopeRoute:
		return "route"
	}
	return sc
}

// heapPerServiceKB is the largest Envoy's heap after the cold start over
// the services it holds, as the ingress's heap per exported port is.
func heapPerServiceKB(r *RunResult) float64 {
	return float64(r.Envoy.ColdHeapBytes) / 1024 / float64(r.Services)
}
