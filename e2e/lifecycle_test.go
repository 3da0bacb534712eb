package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/stretchr/testify/require"
)

// An export withdrawn by its owner stops being reachable from the consumer
// with its next request, and works again once exported again; the
// gateways follow without a restart: the routing scope and the listener
// of its port go, and come back.
func TestWithdrawnExportStopsAndReturnsDelta(t *testing.T) {
	testWithdrawnExport(t, options{})
}

func TestWithdrawnExportStopsAndReturnsSotW(t *testing.T) {
	testWithdrawnExport(t, options{sotw: true})
}

func testWithdrawnExport(t *testing.T, opts options) {
	a, b := federate(t, opts)
	pids := []int{a.egress.Pid(), b.ingress.Pid()}
	call := func(ctx context.Context) error {
		_, err := a.importedHTTP(ctx, "/")
		return err
	}
	require.NoError(t, call(context.Background()))

	b.writeServices(false)
	eventually(t, "the request fails once mesh-b withdrew payments", func(ctx context.Context) error {
		if err := call(ctx); err == nil {
			return errors.New("still answered")
		}
		return nil
	})
	require.Empty(t, a.agent.Catalog.Imports(), "mesh-a no longer imports payments")

	b.writeServices(true)
	eventually(t, "the request works again once mesh-b exported payments again", call)
	require.Equal(t, pids, []int{a.egress.Pid(), b.ingress.Pid()}, "the same Envoy processes")
}

// Envoy keeps serving while its agent restarts, and the agent that comes
// back from its store pushes nothing that changes a listener or a cluster.
func TestAgentRestartChangesNothing(t *testing.T) {
	a, _ := federate(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := gatewayChurn(ctx, t, a)

	stop := make(chan struct{})
	done := make(chan error, 1)
	var calls int
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := a.importedHTTP(ctx, "/during-restart"); err != nil {
				done <- fmt.Errorf("request %d during the restart: %w", calls, err)
				return
			}
			calls++
		}
	}()
	a.restartAgent()
	a.waitImported()
	// Requests go on for a while with the new agent in place.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	require.NoError(t, <-done)
	require.Positive(t, calls)

	require.Equal(t, before, gatewayChurn(ctx, t, a), "listeners and clusters added, modified or removed")
}

// gatewayChurn reads the counters of listeners and clusters Envoy added,
// modified or removed, on both gateways of m.
func gatewayChurn(ctx context.Context, t *testing.T, m *mesh) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, e := range [...]struct {
		role string
		get  func() (map[string]uint64, error)
	}{
		{"egress", func() (map[string]uint64, error) { return churn(ctx, m.egress) }},
		{"ingress", func() (map[string]uint64, error) { return churn(ctx, m.ingress) }},
	} {
		st, err := e.get()
		require.NoError(t, err)
		for k, v := range st {
			out[e.role+" "+k] = v
		}
	}
	return out
}

// A changed cluster is warmed by Envoy as a new cluster that waits for its
// endpoints; the agent sends them with it, so the change applies at once
// and nothing waits for the EDS initial_fetch_timeout (checkGateways).
func TestChangedClusterAppliesAtOnceDelta(t *testing.T) { testChangedCluster(t, options{}) }

func TestChangedClusterAppliesAtOnceSotW(t *testing.T) {
	testChangedCluster(t, options{sotw: true})
}

func testChangedCluster(t *testing.T, opts options) {
	a, b := federate(t, opts)
	cluster := "egress/mesh-b/payments/http"
	sni := "http.payments.mesh-b.example"
	before, err := a.egress.Stats(context.Background(), "cluster_manager.cds.update_success")
	require.NoError(t, err)

	b.HTTPSNI = sni
	b.writeServices(true)
	eventually(t, "mesh-a's egress cluster names the new SNI", func(ctx context.Context) error {
		got := egressClusterSNI(ctx, t, a, cluster)
		if got != sni {
			return fmt.Errorf("cluster %s has SNI %q", cluster, got)
		}
		return nil
	})
	eventually(t, "requests cross with the new SNI", func(ctx context.Context) error {
		_, err := a.importedHTTP(ctx, "/after-sni-change")
		return err
	})
	after, err := a.egress.Stats(context.Background(), "cluster_manager.cds.update_success")
	require.NoError(t, err)
	require.Greater(t, after["cluster_manager.cds.update_success"], before["cluster_manager.cds.update_success"])
	warming, err := a.egress.Stats(context.Background(), "cluster_manager.warming_clusters")
	require.NoError(t, err)
	require.Zero(t, warming["cluster_manager.warming_clusters"])
}

// egressClusterSNI is the SNI of the named active cluster of m's egress
// Envoy, "" when it has none.
func egressClusterSNI(ctx context.Context, t *testing.T, m *mesh, name string) string {
	t.Helper()
	dump, err := m.egress.ConfigDump(ctx, "resource=dynamic_active_clusters")
	require.NoError(t, err)
	for _, c := range dump.GetConfigs() {
		d := &adminv3.ClustersConfigDump_DynamicCluster{}
		require.NoError(t, c.UnmarshalTo(d))
		cl := &clusterv3.Cluster{}
		require.NoError(t, d.GetCluster().UnmarshalTo(cl))
		if cl.GetName() != name {
			continue
		}
		tc := &tlsv3.UpstreamTlsContext{}
		require.NoError(t, cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(tc))
		return tc.GetSni()
	}
	return ""
}
