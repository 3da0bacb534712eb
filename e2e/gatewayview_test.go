package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/envoyrun"
)

func TestGatewayViewMatchesEnvoyDelta(t *testing.T) { testGatewayView(t, options{}) }

func TestGatewayViewMatchesEnvoySotW(t *testing.T) { testGatewayView(t, options{sotw: true}) }

// What meshfed gateways and meshfed gateway config read from the agent is
// what the real Envoy gateways hold: every type SYNCED, and the agent's
// config dump equal to Envoy's own /config_dump (secrets aside: Envoy
// shows only those it uses).
func testGatewayView(t *testing.T, opts options) {
	a, b := federate(t, opts)
	for _, m := range []*mesh{a, b} {
		var gateways []agent.GatewayView
		eventually(t, m.Name+" gateways all SYNCED", func(ctx context.Context) error {
			gateways = nil
			if err := m.adminClient().Get(ctx, "/api/v1/gateways", &gateways); err != nil {
				return err
			}
			return allSynced(gateways)
		})
		byRole := map[string]*envoyrun.Envoy{"egress": m.egress, "ingress": m.ingress}
		for _, g := range gateways {
			e := byRole[g.Role]
			require.NotNil(t, e, "gateway %s of role %q", g.NodeID, g.Role)
			delete(byRole, g.Role)
			eventually(t, m.Name+" "+g.NodeID+": the agent's dump is Envoy's", func(ctx context.Context) error {
				return dumpMatches(ctx, m, g.NodeID, e)
			})
		}
		require.Empty(t, byRole, "roles without a gateway in /api/v1/gateways")
	}
}

func (m *mesh) adminClient() *admin.Client {
	return &admin.Client{BaseURL: "http://" + m.agent.AdminAddr().String()}
}

func allSynced(gateways []agent.GatewayView) error {
	if len(gateways) != 2 {
		return fmt.Errorf("%d gateways connected, want 2", len(gateways))
	}
	var errs []error
	for _, g := range gateways {
		// The ingress uses no routes: it asks for the other four types.
		if len(g.Types) < 4 {
			errs = append(errs, fmt.Errorf("%s: %d types, want 4 or 5", g.NodeID, len(g.Types)))
		}
		for _, ty := range g.Types {
			if ty.State != agent.Synced {
				errs = append(errs, fmt.Errorf("%s %s: %s (wanted %q, acked %q)", g.NodeID, ty.TypeURL, ty.State, ty.WantedVersion, ty.AckedVersion))
			}
		}
	}
	return errors.Join(errs...)
}

// dumpMatches compares the agent's config dump of node with Envoy's, type
// by type, secrets aside.
func dumpMatches(ctx context.Context, m *mesh, node string, e *envoyrun.Envoy) error {
	var body json.RawMessage
	if err := m.adminClient().Get(ctx, "/api/v1/gateways/"+node+"/config_dump", &body); err != nil {
		return err
	}
	var ours adminv3.ConfigDump
	if err := protojson.Unmarshal(body, &ours); err != nil {
		return fmt.Errorf("config_dump of %s: %w", node, err)
	}
	want, err := dynamicResources(&ours)
	if err != nil {
		return fmt.Errorf("the agent's dump of %s: %w", node, err)
	}
	types := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.ScopedRouteType}
	return envoyHolds(ctx, e, want, types, m.sotw, "the agent's dump of "+node)
}
