package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/envoyrun/envoytest"
)

// TestRealEnvoyGateways runs a tiny plan with real Envoy gateways for every
// system: every Envoy ACKs every change, Envoy's own counters show it
// applied them and rejected nothing, and its config_dump holds exactly
// what the system serves. It checks no timing.
func TestRealEnvoyGateways(t *testing.T) {
	envoytest.Binary(t)
	opts := Options{
		Plans:         []Plan{{Kind: KindEnvoy, Services: []int{40}, Gateways: []int{2}, Modes: []string{ModeDelta}}},
		SingleChanges: 3,
		SingleBudget:  time.Millisecond,
		WaitTimeout:   time.Minute,
		Sync:          SyncOptions{Skip: true},
		Progress:      testWriter{t},
	}
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
