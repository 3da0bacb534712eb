package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/admin"
)

func postPlan(t *testing.T, a *Agent, body string) (int, string) {
	t.Helper()
	return postAdmin(t, a, "/api/v1/plan", body)
}

// A plan names what a reload of another registry file would change,
// applies none of it, and refuses files outside the agent's folders and
// configurations that fail the check.
func TestPlanChangesNothing(t *testing.T) {
	ma, _, a, path, _ := reloadable(t)

	code, body := postPlan(t, a, "{}")
	require.Equal(t, http.StatusOK, code, body)
	var p Plan
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	require.False(t, p.Changes, body)
	require.Equal(t, path, p.Config)

	code, body = postPlan(t, a, `{"registry": "`+filepath.Join(ma.dir, "more.yaml")+`"}`)
	require.Equal(t, http.StatusOK, code, body)
	p = Plan{}
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	require.True(t, p.Changes)
	require.Equal(t, []ExportPlan{{Peer: "mesh-b", Gained: []string{"ledger"}, Lost: []string{}}}, p.Exports)
	require.Equal(t, []ResourceChange{
		{Change: "added", Type: "clusters", Name: "ingress/ledger/postgres"},
		{Change: "added", Type: "endpoints", Name: "ingress/ledger/postgres"},
		{Change: "changed", Type: "listeners", Name: "ingress/tls"},
	}, p.Gateways[1].Resources)
	require.Equal(t, GatewayPlan{Role: "egress", Resources: []ResourceChange{}}, p.Gateways[0])
	require.Equal(t, []string{"inventory"}, exportNames(a), "a plan applies nothing")

	// Configurations the agent is not to read, or that fail the check.
	elsewhere := filepath.Join(t.TempDir(), "meshfed.yaml")
	_, err := a.Plan(context.Background(), admin.PlanRequest{Config: elsewhere})
	require.ErrorContains(t, err, `config: "`+elsewhere+`" is not in `+ma.dir+`: a plan reads files with the agent's rights, so only beside those it reads already: bad request`)
	_, err = a.Plan(context.Background(), admin.PlanRequest{Registry: "more.yaml"})
	require.ErrorContains(t, err, `registry: "more.yaml" is not an absolute path: bad request`)
	bad := filepath.Join(ma.dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("trustDomain: mesh-a.example\nfederation: {grace: soon}\n"), 0o600))
	code, body = postPlan(t, a, `{"config": "`+bad+`"}`)
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	require.Contains(t, body, "configuration not planned: "+bad+":2: error: federation.grace")
}
