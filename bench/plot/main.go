// Command plot draws the plots of a meshfed-bench JSON report: the p99 of
// single endpoint changes and of route changes until every
// gateway ACKed them, and the control plane's CPU per endpoint change,
// against N, one line per system and mode, at the M meshfed was measured
// at at the most sizes; simulated gateways only. SVG and PNG.
//
// It is a module of its own so that the plotting stack (gonum/plot and its
// fonts) stays out of meshfed's module graph; it reads the report's JSON
// and nothing else of meshfed.
//
//	go -C bench/plot run . -in ../results/meshfed-bench.json -out ../results
package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// report is the part of the bench's JSON report the plots draw.
type report struct {
	Runs []run `json:"runs"`
}

type run struct {
	Kind     string    `json:"kind"`
	System   string    `json:"system"`
	Mode     string    `json:"mode"`
	Services int       `json:"services"`
	Gateways int       `json:"gateways"`
	Failed   string    `json:"failed"`
	Single   *workload `json:"single"`
}

type workload struct {
	ByScope     map[string]latency `json:"byScope"`
	CostByScope map[string]cost    `json:"costByScope"`
}

type latency struct {
	Count int     `json:"count"`
	P99   float64 `json:"p99Ms"`
}

type cost struct {
	Updates int     `json:"updates"`
	CPUMs   float64 `json:"cpuMsPerUpdate"`
}

// The systems and modes, in the order of the legend.
var (
	systems = []string{"meshfed", "snapshot", "linear"}
	modes   = []string{"delta", "sotw"}
)

func main() {
	in := flag.String("in", "bench/results/meshfed-bench.json", "the bench's JSON report")
	out := flag.String("out", "", "directory of the plots (default: the report's)")
	flag.Parse()
	if *out == "" {
		*out = filepath.Dir(*in)
	}
	files, err := plotFile(*in, *out)
	for _, f := range files {
		fmt.Println("wrote", f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func plotFile(in, out string) ([]string, error) {
	b, err := os.ReadFile(in)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	return r.plots(out)
}

// series is one plot: a figure of a run, and whether it has it.
type series struct {
	file, title, y string
	get            func(run) (float64, bool)
}

// figure is what a run measured of a scope: the value plotted, and
// whether there is one (the zero figure has none).
type figure interface{ value() (float64, bool) }

func (l latency) value() (float64, bool) { return l.P99, l.Count > 0 }

func (c cost) value() (float64, bool) { return c.CPUMs, c.Updates > 0 }

// ofScope gets the figure of scope among those of a run's single changes
// that pick takes.
func ofScope[F figure](scope string, pick func(*workload) map[string]F) func(run) (float64, bool) {
	return func(r run) (float64, bool) {
		if r.Single == nil {
			return 0, false
		}
		return pick(r.Single)[scope].value()
	}
}

func p99Of(scope string) func(run) (float64, bool) {
	return ofScope(scope, func(w *workload) map[string]latency { return w.ByScope })
}

func cpuOf(scope string) func(run) (float64, bool) {
	return ofScope(scope, func(w *workload) map[string]cost { return w.CostByScope })
}

// plots draws the plots of the runs of simulated gateways into dir.
func (r *report) plots(dir string) ([]string, error) {
	runs := slices.DeleteFunc(slices.Clone(r.Runs), func(x run) bool {
		return x.Failed != "" || x.Kind != "" && x.Kind != "sim"
	})
	// The M meshfed was measured at at the most sizes, the largest of
	// those: a baseline measured alone at another N (the fan-out floor)
	// does not move the plots.
	sizes := map[int]map[int]bool{}
	for _, x := range runs {
		if x.System != "meshfed" {
			continue
		}
		if sizes[x.Gateways] == nil {
			sizes[x.Gateways] = map[int]bool{}
		}
		sizes[x.Gateways][x.Services] = true
	}
	m := 0
	for gw, ns := range sizes {
		if len(ns) > len(sizes[m]) || len(ns) == len(sizes[m]) && gw > m {
			m = gw
		}
	}
	if m == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, spec := range []series{
		{"latency", fmt.Sprintf("endpoint change until all %d gateways ACKed (p99)", m), "ms", p99Of("endpoints")},
		{"latency-route", fmt.Sprintf("route change until all %d gateways ACKed (p99)", m), "ms", p99Of("route")},
		{"cpu", fmt.Sprintf("control plane CPU per endpoint change (%d gateways)", m), "CPU ms per update", cpuOf("endpoints")},
	} {
		p := plot.New()
		p.Title.Text = spec.title
		p.X.Label.Text = "services (N)"
		p.Y.Label.Text = spec.y
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
		p.Legend.Top = true
		p.Legend.Left = true
		var lines []any
		for _, sys := range systems {
			for _, mode := range modes {
				var pts plotter.XYs
				for _, x := range runs {
					if x.System != sys || x.Mode != mode || x.Gateways != m {
						continue
					}
					if v, ok := spec.get(x); ok && finite(v) {
						pts = append(pts, plotter.XY{X: float64(x.Services), Y: v})
					}
				}
				if len(pts) == 0 {
					continue
				}
				slices.SortFunc(pts, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
				lines = append(lines, sys+" "+mode, pts)
			}
		}
		if len(lines) == 0 {
			continue
		}
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			return files, err
		}
		for _, ext := range []string{".svg", ".png"} {
			path := filepath.Join(dir, spec.file+ext)
			if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
				return files, err
			}
			files = append(files, path)
		}
	}
	return files, nil
}

// finite drops values a log axis cannot show.
func finite(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }
