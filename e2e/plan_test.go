package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/model"
)

// planOf asks m's agent for the plan of req.
func planOf(t *testing.T, m *mesh, req admin.PlanRequest) agent.Plan {
	t.Helper()
	cl := &admin.Client{BaseURL: "http://" + m.agent.AdminAddr().String()}
	var p agent.Plan
	require.NoError(t, cl.PostJSON(context.Background(), "/api/v1/plan", req, &p))
	return p
}

// candidate writes content to name beside m's configuration, and returns
// its path.
func candidate(t *testing.T, m *mesh, name, content string) string {
	t.Helper()
	path := filepath.Join(m.Dir, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// A plan lists exactly what a reload would change on a running
// federation with real gateways, one change at a time: a peer removed,
// an export withdrawn, a port changed; and applies none of it.
func TestPlanOfAFederation(t *testing.T) {
	a, _ := federate(t, options{otherPeers: []string{"mesh-c"}})
	cfg, err := os.ReadFile(a.ConfigPath())
	require.NoError(t, err)
	services, err := os.ReadFile(filepath.Join(a.Dir, "services.yaml"))
	require.NoError(t, err)

	p := planOf(t, a, admin.PlanRequest{})
	require.False(t, p.Changes, "%+v", p)
	var peerPlan, portPlan agent.Plan
	var peerPath, portPath string

	t.Run("peer removed", func(t *testing.T) {
		line := "  - {name: mesh-c, trustDomain: mesh-c.example, spiffeIds: [spiffe://mesh-c.example/meshfed/agent]}\n"
		require.Contains(t, string(cfg), line)
		path := candidate(t, a, "without-mesh-c.yaml", strings.Replace(string(cfg), line, "", 1))
		p := planOf(t, a, admin.PlanRequest{Config: path})
		peerPlan, peerPath = p, path
		require.Equal(t, agent.Plan{
			Config: path, Changes: true,
			Peers:   agent.PeerPlan{Added: []string{}, Removed: []string{"mesh-c"}, Changed: []agent.PeerChange{}},
			Exports: []agent.ExportPlan{},
			// The egress no longer needs mesh-c's bundle; nothing was
			// exported to mesh-c, so the ingress stays as it is.
			Gateways: []agent.GatewayPlan{
				{Role: "egress", Removed: 1, Resources: []agent.ResourceChange{
					{Change: "removed", Type: "secrets", Name: "meshfed/bundle/mesh-c_2eexample"},
				}},
				{Role: "ingress", Resources: []agent.ResourceChange{}},
			},
			Applied: []string{"peers[mesh-c]"}, NeedsRestart: []string{}, Rejected: []agent.PlanRejection{}, Notes: []string{},
		}, p)
	})

	t.Run("export withdrawn", func(t *testing.T) {
		path := candidate(t, a, "withdrawn.yaml", "services: []\n")
		p := planOf(t, a, admin.PlanRequest{Registry: path})
		require.Equal(t, agent.Plan{
			Config: a.ConfigPath(), Registry: path, Changes: true,
			Peers:   agent.PeerPlan{Added: []string{}, Removed: []string{}, Changed: []agent.PeerChange{}},
			Exports: []agent.ExportPlan{{Peer: "mesh-b", Gained: []string{}, Lost: []string{"inventory"}}},
			// The last export gone, the ingress has nothing to serve.
			Gateways: []agent.GatewayPlan{
				{Role: "egress", Resources: []agent.ResourceChange{}},
				{Role: "ingress", Removed: 10, Resources: []agent.ResourceChange{
					{Change: "removed", Type: "clusters", Name: "ingress/inventory/grpc"},
					{Change: "removed", Type: "clusters", Name: "ingress/inventory/http"},
					{Change: "removed", Type: "clusters", Name: "ingress/inventory/tcp"},
					{Change: "removed", Type: "clusters", Name: "ingress/router"},
					{Change: "removed", Type: "endpoints", Name: "ingress/inventory/grpc"},
					{Change: "removed", Type: "endpoints", Name: "ingress/inventory/http"},
					{Change: "removed", Type: "endpoints", Name: "ingress/inventory/tcp"},
					{Change: "removed", Type: "listeners", Name: "ingress/router"},
					{Change: "removed", Type: "listeners", Name: "ingress/tls"},
					{Change: "removed", Type: "secrets", Name: "meshfed/validator/mesh-b_2eexample"},
				}},
			},
			Applied: []string{}, NeedsRestart: []string{}, Rejected: []agent.PlanRejection{}, Notes: []string{},
		}, p)
	})

	t.Run("port changed", func(t *testing.T) {
		old := "{name: http, port: 8080,"
		require.Contains(t, string(services), old)
		path := candidate(t, a, "port-8081.yaml", strings.Replace(string(services), old, "{name: http, port: 8081,", 1))
		p := planOf(t, a, admin.PlanRequest{Registry: path})
		portPlan, portPath = p, path
		require.Equal(t, agent.Plan{
			Config: a.ConfigPath(), Registry: path, Changes: true,
			Peers:   agent.PeerPlan{Added: []string{}, Removed: []string{}, Changed: []agent.PeerChange{}},
			Exports: []agent.ExportPlan{},
			// The port is in the default server name, which the TLS
			// listener matches and the router routes on.
			Gateways: []agent.GatewayPlan{
				{Role: "egress", Resources: []agent.ResourceChange{}},
				{Role: "ingress", Changed: 2, Resources: []agent.ResourceChange{
					{Change: "changed", Type: "listeners", Name: "ingress/router"},
					{Change: "changed", Type: "listeners", Name: "ingress/tls"},
				}},
			},
			Applied: []string{}, NeedsRestart: []string{}, Rejected: []agent.PlanRejection{}, Notes: []string{},
		}, p)
	})

	// Nothing was applied: the agent's own files still plan no change.
	p = planOf(t, a, admin.PlanRequest{})
	require.False(t, p.Changes, "%+v", p)
	require.Len(t, a.agent.Catalog.Exports(), 1)

	// Applied, each change makes the gateways' resources change as
	// planned: the registry file is followed, the configuration reloaded.
	before := served(t, a)
	require.NoError(t, os.Rename(portPath, filepath.Join(a.Dir, "services.yaml")))
	appliedAsPlanned(t, a, before, portPlan)
	before = served(t, a)
	require.NoError(t, os.Rename(peerPath, a.ConfigPath()))
	cl := &admin.Client{BaseURL: "http://" + a.agent.AdminAddr().String()}
	require.NoError(t, cl.Post(context.Background(), "/api/v1/reload", nil))
	appliedAsPlanned(t, a, before, peerPlan)
}

// served is every resource m's agent serves its gateways, by role, type
// and name, as the bytes it sends.
func served(t *testing.T, m *mesh) map[[3]string][]byte {
	t.Helper()
	out := map[[3]string][]byte{}
	for _, role := range []model.Role{model.Egress, model.Ingress} {
		for _, typ := range planTypes {
			for _, r := range m.agent.Cache.Resources(role, typ.url) {
				out[[3]string{string(role), typ.name, r.GetName()}] = r.GetResource().GetValue()
			}
		}
	}
	return out
}

// planTypes are the resource types in the order a plan lists them.
var planTypes = []struct{ name, url string }{
	{"clusters", resource.ClusterType},
	{"endpoints", resource.EndpointType},
	{"listeners", resource.ListenerType},
	{"scopedRoutes", resource.ScopedRouteType},
	{"secrets", resource.SecretType},
}

// appliedAsPlanned waits until what m's gateways are served differs from
// before exactly as plan said it would.
func appliedAsPlanned(t *testing.T, m *mesh, before map[[3]string][]byte, plan agent.Plan) {
	t.Helper()
	eventually(t, "the gateways' resources change as planned", func(context.Context) error {
		after := served(t, m)
		var got []agent.GatewayPlan
		for _, role := range []model.Role{model.Egress, model.Ingress} {
			g := agent.GatewayPlan{Role: role, Resources: []agent.ResourceChange{}}
			for _, typ := range planTypes {
				var changes []agent.ResourceChange
				for k, v := range after {
					old, ok := before[k]
					switch {
					case k[0] != string(role) || k[1] != typ.name:
					case !ok:
						changes = append(changes, agent.ResourceChange{Change: "added", Type: typ.name, Name: k[2]})
						g.Added++
					case !bytes.Equal(old, v):
						changes = append(changes, agent.ResourceChange{Change: "changed", Type: typ.name, Name: k[2]})
						g.Changed++
					}
				}
				for k := range before {
					if _, ok := after[k]; !ok && k[0] == string(role) && k[1] == typ.name {
						changes = append(changes, agent.ResourceChange{Change: "removed", Type: typ.name, Name: k[2]})
						g.Removed++
					}
				}
				slices.SortFunc(changes, func(x, y agent.ResourceChange) int { return strings.Compare(x.Name, y.Name) })
				g.Resources = append(g.Resources, changes...)
			}
			got = append(got, g)
		}
		if !reflect.DeepEqual(got, plan.Gateways) {
			return fmt.Errorf("served %+v, planned %+v", got, plan.Gateways)
		}
		return nil
	})
}
