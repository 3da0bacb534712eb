package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlotsOfAReport draws the plots of a small report with the fields the
// bench writes, at the M meshfed was measured at at the most sizes, and
// ignores the runs of real Envoy gateways.
func TestPlotsOfAReport(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "meshfed-bench.json")
	const report = `{"runs": [
  {"kind": "sim", "system": "meshfed", "mode": "delta", "services": 1000, "gateways": 10,
   "single": {"byScope": {"endpoints": {"count": 3, "p99Ms": 2}, "route": {"count": 1, "p99Ms": 9}},
              "costByScope": {"endpoints": {"updates": 3, "cpuMsPerUpdate": 0.5}}}},
  {"kind": "sim", "system": "meshfed", "mode": "delta", "services": 10000, "gateways": 10,
   "single": {"byScope": {"endpoints": {"count": 3, "p99Ms": 3}, "route": {"count": 1, "p99Ms": 90}},
              "costByScope": {"endpoints": {"updates": 3, "cpuMsPerUpdate": 0.6}}}},
  {"kind": "sim", "system": "linear", "mode": "delta", "services": 100, "gateways": 100,
   "single": {"byScope": {"endpoints": {"count": 3, "p99Ms": 6}}}},
  {"kind": "sim", "system": "linear", "mode": "delta", "services": 10000, "gateways": 100,
   "single": {"byScope": {"endpoints": {"count": 3, "p99Ms": 60}}}},
  {"kind": "envoy", "system": "meshfed", "mode": "delta", "services": 1000, "gateways": 4,
   "single": {"byScope": {"endpoints": {"count": 3, "p99Ms": 5}}}}
]}`
	if err := os.WriteFile(in, []byte(report), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := plotFile(in, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"latency.svg", "latency.png", "latency-route.svg", "latency-route.png", "cpu.svg", "cpu.png"}
	if len(files) != len(want) {
		t.Fatalf("wrote %v, want %v", files, want)
	}
	for i, f := range files {
		if filepath.Base(f) != want[i] {
			t.Errorf("file %d: %s, want %s", i, filepath.Base(f), want[i])
		}
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v, %v", f, fi, err)
		}
	}
	svg, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(svg), "all 10 gateways") {
		t.Errorf("latency.svg is not drawn at M=10, where meshfed was measured at 2 sizes")
	}
}
