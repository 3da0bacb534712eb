package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/admin"
)

// POST /api/v1/plan hands the plan its request, answers its errors as a
// reload's are answered, refuses a body that is not a plan request, and
// is guarded as a reload is: loopback and JSON only.
func TestPlan(t *testing.T) {
	var got []admin.PlanRequest
	opts := options(t)
	opts.Plan = func(_ context.Context, req admin.PlanRequest) (any, error) {
		got = append(got, req)
		switch req.Config {
		case "/etc/meshfed/bad.yaml":
			return nil, fmt.Errorf("bad.yaml:3: error: federation.grace: bad: %w", admin.ErrInvalid)
		case "relative.yaml":
			return nil, fmt.Errorf("config: %q is not an absolute path: %w", req.Config, admin.ErrBadRequest)
		}
		return map[string]bool{"changes": req.Registry != ""}, nil
	}
	url := start(t, opts)

	a := doJSON(t, http.MethodPost, url+"/api/v1/plan", "")
	require.Equal(t, http.StatusOK, a.code, a.body)
	require.JSONEq(t, `{"changes": false}`, a.body)
	a = doJSON(t, http.MethodPost, url+"/api/v1/plan", `{"config": "/etc/meshfed/next.yaml", "registry": "/etc/meshfed/services.yaml"}`)
	require.Equal(t, http.StatusOK, a.code, a.body)
	require.JSONEq(t, `{"changes": true}`, a.body)
	a = doJSON(t, http.MethodPost, url+"/api/v1/plan", `{"config": "/etc/meshfed/bad.yaml"}`)
	require.Equal(t, http.StatusUnprocessableEntity, a.code)
	require.JSONEq(t, errJSON("bad.yaml:3: error: federation.grace: bad: invalid"), a.body)
	a = doJSON(t, http.MethodPost, url+"/api/v1/plan", `{"config": "relative.yaml"}`)
	require.Equal(t, http.StatusBadRequest, a.code)
	require.JSONEq(t, errJSON(`config: "relative.yaml" is not an absolute path: bad request`), a.body)
	require.Equal(t, []admin.PlanRequest{{}, {Config: "/etc/meshfed/next.yaml", Registry: "/etc/meshfed/services.yaml"}, {Config: "/etc/meshfed/bad.yaml"}, {Config: "relative.yaml"}}, got)

	a = doJSON(t, http.MethodPost, url+"/api/v1/plan", `{"file": "/etc/passwd"}`)
	require.Equal(t, http.StatusBadRequest, a.code)
	require.JSONEq(t, errJSON(`the request body is not a plan request ({"config": PATH, "registry": PATH}): json: unknown field "file": bad request`), a.body)
	a = do(t, http.MethodGet, url+"/api/v1/plan")
	require.Equal(t, http.StatusMethodNotAllowed, a.code)
	require.Len(t, got, 4, "a refused request never reaches the plan")

	opts.Listen, opts.AllowNonLoopback, opts.TokenFile = "0.0.0.0:19100", true, tokenFile(t)
	s, err := admin.New(opts)
	require.NoError(t, err)
	w := ask(s.Handler(), http.MethodPost, "/api/v1/plan", "192.0.2.7:40000", "192.0.2.1:19100", fromElsewhere, "{}")
	require.Equal(t, http.StatusForbidden, w.Code)
	require.JSONEq(t, `{"error": "/api/v1/plan answers requests from loopback only"}`, w.Body.String())
	require.Len(t, got, 4)
}

// The client posts a request's JSON and decodes the answer.
func TestClientPostJSON(t *testing.T) {
	opts := options(t)
	opts.Plan = func(_ context.Context, req admin.PlanRequest) (any, error) { return req, nil }
	c := &admin.Client{BaseURL: start(t, opts)}
	var got admin.PlanRequest
	require.NoError(t, c.PostJSON(context.Background(), "/api/v1/plan", admin.PlanRequest{Config: "/a/b.yaml"}, &got))
	require.Equal(t, admin.PlanRequest{Config: "/a/b.yaml"}, got)
}
