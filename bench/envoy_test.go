package bench

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/envoyrun/envoytest"
)

// realEnvoy are the options of a tiny run with real Envoy: a few single
// changes, no sync; it skips the test without Envoy.
func realEnvoy(t *testing.T, changes int) Options {
	envoytest.Binary(t)
	return Options{
		SingleChanges: changes,
		SingleBudget:  time.Millisecond,
		WaitTimeout:   time.Minute,
		Sync:          SyncOptions{Skip: true},
		Progress:      testWriter{t},
	}
}

// TestRealEnvoyGateways runs a tiny plan with real Envoy gateways for every
// system: every Envoy ACKs every change, Envoy's own counters show it
// applied them and rejected nothing, and its config_dump holds exactly
// what the system serves. It checks no timing.
func TestRealEnvoyGateways(t *testing.T) {
	opts := realEnvoy(t, 3)
	opts.Plans = []Plan{{Kind: KindEnvoy, Services: []int{40}, Gateways: []int{2}, Modes: []string{ModeDelta}}}
	rep, err := Run(context.Background(), opts)
	require.NoError(t, err)
	require.Len(t, rep.Runs, len(Systems))
	for _, r := range rep.Runs {
		t.Run(r.System, func(t *testing.T) {
			require.Empty(t, r.Failed)
			assert.Empty(t, r.Errors)
			assert.Equal(t, KindEnvoy, r.Kind)
			require.NotNil(t, r.Cold)
			require.NotNil(t, r.Single)
			assert.Equal(t, 3, r.Single.Latency.Count, "changes applied by every Envoy")
			assert.Zero(t, r.Single.Latency.TimedOut)
			assert.Zero(t, r.NACKs)
			assert.True(t, r.Check.OK(), "config_dump: %v", r.Check.Problems)
			assert.Equal(t, 2, r.Check.Gateways)
			require.NotNil(t, r.Envoy)
			assert.Zero(t, r.Envoy.UpdateRejected, "Envoy's update_rejected")
			assert.GreaterOrEqual(t, r.Envoy.CDSUpdates, r.Envoy.ClusterChanges)
			assert.GreaterOrEqual(t, r.Envoy.LDSUpdates, r.Envoy.ListenerChanges)
			assert.Positive(t, r.Envoy.EndRSSBytes)
			assert.Zero(t, r.Envoy.Overloaded, "Envoys refusing requests")
			if r.Envoy.InitFetchTimeout > 0 {
				t.Logf("Envoy's init_fetch_timeout: %d (a warming cluster waited for endpoints that were not sent again)", r.Envoy.InitFetchTimeout)
			}
		})
	}
}

// TestIngressGateway measures the ingress gateway at a tiny N against a
// real Envoy: the report has every figure, Envoy rejected nothing and holds
// what the cache serves. It checks no value.
func TestIngressGateway(t *testing.T) {
	opts := realEnvoy(t, 2)
	opts.NoEgress, opts.Ingress = true, []int{20}
	rep, err := Run(context.Background(), opts)
	require.NoError(t, err)
	assert.Empty(t, rep.Runs)
	require.NotNil(t, rep.Ingress)
	require.NotNil(t, rep.Ingress.Empty)
	require.Len(t, rep.Ingress.Runs, 1)
	for _, run := range rep.Ingress.all() {
		require.Empty(t, run.Failed, "N=%d", run.Exports)
		assert.Empty(t, run.Errors, "N=%d", run.Exports)
		assert.True(t, run.Check.OK(), "N=%d config_dump: %v", run.Exports, run.Check.Problems)
		assert.Positive(t, run.HeapBytes, "N=%d", run.Exports)
		require.NotNil(t, run.Envoy)
		assert.Zero(t, run.Envoy.UpdateRejected, "N=%d: Envoy's update_rejected", run.Exports)
	}
	run := rep.Ingress.Runs[0]
	assert.Equal(t, 20, run.Exports)
	assert.Positive(t, run.HeapPerExport)
	assert.NotZero(t, run.GrowthPerExport)
	assert.Positive(t, run.ListenerBytes)
	for _, k := range exportKinds {
		c := run.Changes[k.name]
		require.NotNil(t, c, k.name)
		assert.Equal(t, 2, c.Latency.Count, "%s changes applied by Envoy", k.name)
		assert.Zero(t, c.Latency.TimedOut, k.name)
		assert.Positive(t, c.WireBytes.P50, "%s: bytes to Envoy", k.name)
	}

	var sb strings.Builder
	require.NoError(t, rep.WriteTable(&sb))
	assert.Contains(t, sb.String(), "ingress gateway: one real Envoy")
	heap := rep.Targets[slices.IndexFunc(rep.Targets, func(t Target) bool { return strings.HasPrefix(t.Name, "ingress Envoy heap per exported port, N=20") })]
	assert.NotNil(t, heap.Met, "the heap target has its figure: %+v", heap)
}

// TestDataPath sends requests and a TCP stream through a real egress and
// ingress Envoy, and directly: every request through both gateways is
// answered, the TCP sink counts what crossed them, and the report has its
// table and rows. It checks no figure.
func TestDataPath(t *testing.T) {
	opts := realEnvoy(t, 1)
	opts.NoEgress, opts.DataPath = true, 300*time.Millisecond
	rep, err := Run(context.Background(), opts)
	require.NoError(t, err)
	dp := rep.DataPath
	require.NotNil(t, dp)
	require.Empty(t, dp.Failed)
	assert.Empty(t, dp.Errors)
	require.Len(t, dp.HTTP, len(dataPathConcurrency))
	for i, l := range dp.HTTP {
		assert.Equal(t, dataPathConcurrency[i], l.Concurrency)
		for name, f := range map[string]*HTTPFigures{"direct": l.Direct, "through": l.Through} {
			assert.Positive(t, f.Requests, "%s, concurrency %d: requests answered 200", name, l.Concurrency)
			assert.Zero(t, f.Errors, "%s, concurrency %d", name, l.Concurrency)
			assert.Positive(t, f.P99Ms, "%s, concurrency %d", name, l.Concurrency)
		}
	}
	require.NotNil(t, dp.TCP)
	assert.Positive(t, dp.TCP.DirectBytes)
	assert.Positive(t, dp.TCP.ThroughBytes, "bytes the sink counted through both gateways")
	assert.Zero(t, dp.UpdateRejected)

	var sb strings.Builder
	require.NoError(t, rep.WriteTable(&sb))
	assert.Contains(t, sb.String(), "TCP bulk (MB/s)")
	assert.True(t, slices.ContainsFunc(rep.Targets, func(t Target) bool {
		return strings.HasPrefix(t.Name, "data path, HTTP, concurrency 32")
	}), "the targets report the data path")
}
