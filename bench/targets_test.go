package bench

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func singleRun(system string, n int, l Latency) *RunResult {
	return &RunResult{Kind: KindSimulated, System: system, Mode: ModeDelta, Services: n, Gateways: 100,
		Single: &Workload{Latency: l, ByScope: map[string]Latency{ScopeRoute: l}}}
}

func targetNamed(t *testing.T, ts []Target, name string) Target {
	t.Helper()
	for _, tg := range ts {
		if tg.Name == name {
			return tg
		}
	}
	t.Fatalf("no target %q in %v", name, ts)
	return Target{}
}

// A ratio missed against a baseline says what it needs beside the floor
// every cache pays to reach the gateways, measured with LinearCache at a
// small N.
func TestMissedRatioShowsTheFanOutFloor(t *testing.T) {
	r := &Report{Runs: []*RunResult{
		singleRun(SystemMeshfed, 10000, Latency{Count: 40, P50: 5, P99: 10}),
		singleRun(SystemLinear, 10000, Latency{Count: 20, P50: 150, P99: 240}),
		singleRun(SystemLinear, 1000, Latency{Count: 40, P50: 9, P99: 30}),
		singleRun(SystemLinear, 100, Latency{Count: 40, P50: 6, P99: 12}),
	}}
	got := targetNamed(t, r.changeTargets(100), "  route changes vs linear delta")
	require.Equal(t, "24.0x (p99 10.0 ms vs 240.0 ms); missed by 2x", got.Measured)
	require.Equal(t, "60x needs p99 4.0 ms; the fan-out floor (linear delta at N=100, M=100) is p50 6.0 ms, p99 12.0 ms", got.Note)
	require.False(t, *got.Met)
	all := targetNamed(t, r.changeTargets(100), "  vs linear delta, same N and M")
	require.Equal(t, "60x needs p99 4.0 ms; the fan-out floor (linear delta at N=100, M=100) is p50 6.0 ms, p99 12.0 ms", all.Note)

	r.Runs = append(r.Runs, singleRun(SystemSnapshot, 10000, Latency{Count: 3, P50: 2000, P99: 2160}))
	snap := targetNamed(t, r.changeTargets(100), "  vs snapshot delta, same N and M")
	require.Equal(t, "216.0x (p99 10.0 ms vs 2160.0 ms); missed by 1.1x", snap.Measured)
	require.Equal(t, "240x needs p99 9.0 ms; the fan-out floor (linear delta at N=100, M=100) is p50 6.0 ms, p99 12.0 ms", snap.Note)

	r.Runs[1].Single.ByScope[ScopeRoute] = Latency{Count: 20, P50: 500, P99: 600}
	got = targetNamed(t, r.changeTargets(100), "  route changes vs linear delta")
	require.True(t, *got.Met)
	require.Empty(t, got.Note)
}
