package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/agent"
)

// meshfed plan exits 0 when nothing would change, 2 when something
// would (with what, as a table or JSON), and 1 when the agent refuses the
// file; reload --dry-run plans the agent's own file and applies nothing.
func TestPlanExitCodesAndJSON(t *testing.T) {
	a, dir := startAgentAlone(t, "", "admin: {listen: 127.0.0.1:0}\n")
	url := "http://" + a.AdminAddr().String()
	cfg := filepath.Join(dir, "meshfed.yaml")

	out, code := execIn(t, "plan", "--agent", url, "--config", cfg)
	require.Equal(t, 0, code, out)
	require.Equal(t, "plan of "+cfg+"\nnothing would change\n", out)
	out, code = execIn(t, "reload", "--dry-run", "--agent", url, "--config", cfg)
	require.Equal(t, 0, code, out)
	require.Equal(t, "plan of "+cfg+"\nnothing would change\n", out)

	withdrawn := filepath.Join(dir, "withdrawn.yaml")
	require.NoError(t, os.WriteFile(withdrawn, []byte("services: []\n"), 0o600))
	out, code = execIn(t, "plan", "--agent", url, "--config", cfg, "--registry", withdrawn, "-o", "json")
	require.Equal(t, 2, code, out)
	var p agent.Plan
	require.NoError(t, json.Unmarshal([]byte(out), &p))
	require.Equal(t, agent.Plan{
		Config: cfg, Registry: withdrawn, Changes: true,
		Peers:   agent.PeerPlan{Added: []string{}, Removed: []string{}, Changed: []agent.PeerChange{}},
		Exports: []agent.ExportPlan{{Peer: "mesh-b", Gained: []string{}, Lost: []string{"inventory"}}},
		Gateways: []agent.GatewayPlan{
			{Role: "egress", Resources: []agent.ResourceChange{}},
			// Without an export, the ingress has nothing to listen for.
			{Role: "ingress", Removed: 6, Resources: []agent.ResourceChange{
				{Change: "removed", Type: "clusters", Name: "ingress/inventory/http"},
				{Change: "removed", Type: "clusters", Name: "ingress/router"},
				{Change: "removed", Type: "endpoints", Name: "ingress/inventory/http"},
				{Change: "removed", Type: "listeners", Name: "ingress/router"},
				{Change: "removed", Type: "listeners", Name: "ingress/tls"},
				{Change: "removed", Type: "secrets", Name: "meshfed/validator/mesh-b_2eexample"},
			}},
		},
		Applied: []string{}, NeedsRestart: []string{}, Rejected: []agent.PlanRejection{}, Notes: []string{},
	}, p)

	out, code = execIn(t, "plan", "--agent", url, "--config", cfg, "--registry", withdrawn)
	require.Equal(t, 2, code, out)
	require.Equal(t, `plan of `+cfg+` with the registry file `+withdrawn+`

PEER    EXPORTS GAINED  EXPORTS LOST
mesh-b  -               inventory

GATEWAY  ADDED  CHANGED  REMOVED
egress   0      0        0
ingress  0      0        6

INGRESS RESOURCE                    TYPE       CHANGE
ingress/inventory/http              clusters   removed
ingress/router                      clusters   removed
ingress/inventory/http              endpoints  removed
ingress/router                      listeners  removed
ingress/tls                         listeners  removed
meshfed/validator/mesh-b_2eexample  secrets    removed
`, out)
	require.Len(t, a.Catalog.Exports(), 1, "a plan applies nothing")

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("trustDomain: mesh-a.example\nadmin: {listen: "+a.AdminAddr().String()+"}\nfederation: {grace: soon}\n"), 0o600))
	out, code = execIn(t, "plan", "--config", bad)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "meshfed: the meshfed agent at "+url+" answered POST /api/v1/plan with 422 Unprocessable Entity: configuration not planned: "+bad+":3: error: federation.grace")

	out, code = execIn(t, "plan", "--agent", url, "--config", cfg, "-o", "xml")
	require.Equal(t, 1, code, out)
	require.Equal(t, "meshfed: --output: \"xml\" is not table, json or yaml\n", out)
}

// execIn runs the command line as main does, and returns what it wrote
// (stdout and stderr) and its exit status.
func execIn(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code := execute(args, &out, &out)
	return out.String(), code
}
