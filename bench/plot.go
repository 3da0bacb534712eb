package bench

import (
	"fmt"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plots draws, in SVG and PNG, the p99 latency of single endpoint changes
// and of route configuration changes, and the CPU per endpoint change,
// against N, one line per system and mode, at the M measured at the most
// sizes (the largest of those).
func (r *Report) plots(dir string) ([]string, error) {
	sizes := map[int]map[int]bool{}
	for _, run := range r.Runs {
		if sizes[run.Gateways] == nil {
			sizes[run.Gateways] = map[int]bool{}
		}
		sizes[run.Gateways][run.Services] = true
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
	var files []string
	for _, spec := range []struct {
		file, title, y string
		get            func(*RunResult) (float64, bool)
	}{
		{"latency", fmt.Sprintf("endpoint change until all %d gateways ACKed (p99)", m), "ms", scoped(ScopeEndpoints, p99)},
		{"latency-route", fmt.Sprintf("route configuration change until all %d gateways ACKed (p99)", m), "ms", scoped(ScopeRoute, p99)},
		{"cpu", fmt.Sprintf("control plane CPU per endpoint change (%d gateways)", m), "CPU ms per update", spentOn(single, ScopeEndpoints, cpuMs)},
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
		for _, sys := range Systems {
			for _, mode := range []string{ModeDelta, ModeSotw} {
				var pts plotter.XYs
				for _, run := range r.Runs {
					if run.System != sys || run.Mode != mode || run.Gateways != m {
						continue
					}
					if v, ok := spec.get(run); ok && finite(v) {
						pts = append(pts, plotter.XY{X: float64(run.Services), Y: v})
					}
				}
				if len(pts) == 0 {
					continue
				}
				slices.SortFunc(pts, func(a, b plotter.XY) int {
					switch {
					case a.X < b.X:
						return -1
					case a.X > b.X:
						return 1
					}
					return 0
				})
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
