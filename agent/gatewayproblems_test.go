package agent

import (
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/xds"
)

// What meshfed status exits with 2 for on the gateways' side, judged at a
// fixed time: a role with no gateway, a NACK, a type STALE for longer than
// StaleProblemAfter (not before), and a node id the agent does not serve.
func TestGatewayProblems(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	gw := func(node, role string, types ...GatewayType) GatewayView {
		return GatewayView{Gateway: xds.Gateway{NodeID: node, Role: role, Stream: "delta", ConnectedAt: now.Add(-time.Hour)}, Types: types}
	}
	typ := func(state string, sent, acked time.Time) GatewayType {
		return GatewayType{TypeStatus: xds.TypeStatus{TypeURL: resource.ClusterType, SentVersion: "v2", SentAt: sent, AckedVersion: "v1", AckedAt: acked},
			State: state, WantedVersion: "v2"}
	}
	synced := typ(Synced, now.Add(-time.Minute), now.Add(-time.Minute))

	require.Equal(t, []string{
		"no egress gateway is connected to the agent's xDS server",
		"no ingress gateway is connected to the agent's xDS server",
	}, Status{}.gatewayProblems(now))

	both := Status{Gateways: []GatewayView{gw("egress-gateway", "egress", synced), gw("ingress-gateway", "ingress", synced)}}
	require.Empty(t, both.gatewayProblems(now))

	// STALE since the last response was sent: a problem only past the bound.
	stale := func(ago time.Duration) Status {
		return Status{Gateways: []GatewayView{gw("egress-gateway", "egress", typ(Stale, now.Add(-ago), now.Add(-time.Hour))), gw("ingress-gateway", "ingress", synced)}}
	}
	require.Empty(t, stale(StaleProblemAfter).gatewayProblems(now))
	require.Equal(t, []string{"gateway egress-gateway (egress) has not ACKed Cluster version v2 for 31s (it holds v1)"},
		stale(StaleProblemAfter+time.Second).gatewayProblems(now))

	nacked := typ(Nacked, now, now.Add(-time.Minute))
	nacked.LastNack = &xds.Nack{Reason: "duplicate cluster", At: now}
	s := Status{Gateways: []GatewayView{gw("egress-gateway", "egress", nacked), gw("ingress-gateway", "ingress", synced)}}
	require.Equal(t, []string{"gateway egress-gateway (egress) rejected Cluster version v2: duplicate cluster"}, s.gatewayProblems(now))

	s = Status{Gateways: []GatewayView{gw("egress-gateway", "egress", synced), gw("ingress-gateway", "ingress", synced), gw("egres-gateway", "unknown", typ(Unserved, time.Time{}, time.Time{}))}}
	require.Equal(t, []string{"gateway egres-gateway (delta stream) is served nothing: its node id is none of gateways.egress.nodeIds or gateways.ingress.nodeIds"},
		s.gatewayProblems(now))
}
