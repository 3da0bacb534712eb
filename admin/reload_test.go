package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/admin"
)

// POST /api/v1/reload answers the reload's result, 422 for a file it
// refuses, and 403 to another host, even with the token, which never
// reaches the reload.
func TestReload(t *testing.T) {
	calls := 0
	var refuse error
	opts := options(t)
	opts.Reload = func(context.Context) (any, error) {
		calls++
		if refuse != nil {
			return nil, refuse
		}
		return map[string][]string{"applied": {"exports.file"}}, nil
	}
	url := start(t, opts)

	got := doJSON(t, http.MethodPost, url+"/api/v1/reload", "{}")
	require.Equal(t, http.StatusOK, got.code)
	require.JSONEq(t, `{"applied": ["exports.file"]}`, got.body)

	refuse = fmt.Errorf("meshfed.yaml:9: error: federation.grace: bad: %w", admin.ErrInvalid)
	got = doJSON(t, http.MethodPost, url+"/api/v1/reload", "")
	require.Equal(t, http.StatusUnprocessableEntity, got.code)
	require.JSONEq(t, `{"error": "meshfed.yaml:9: error: federation.grace: bad: invalid"}`, got.body)

	got = do(t, http.MethodGet, url+"/api/v1/reload")
	require.Equal(t, http.StatusMethodNotAllowed, got.code)

	opts.Listen, opts.AllowNonLoopback, opts.TokenFile = "0.0.0.0:19100", true, tokenFile(t)
	s, err := admin.New(opts)
	require.NoError(t, err)
	w := ask(s.Handler(), http.MethodPost, "/api/v1/reload", "192.0.2.7:40000", "192.0.2.1:19100", fromElsewhere, "{}")
	require.Equal(t, http.StatusForbidden, w.Code)
	require.JSONEq(t, `{"error": "/api/v1/reload answers requests from loopback only"}`, w.Body.String())
	require.Equal(t, 2, calls)
}

// A config dump's query reaches the handler; its errors map to 400 and 404.
func TestConfigDumpStatuses(t *testing.T) {
	opts := options(t)
	opts.ConfigDump = func(_ context.Context, node, typ string) (any, error) {
		switch {
		case node != "egress":
			return nil, fmt.Errorf("no gateway %q: %w", node, admin.ErrNotFound)
		case typ == "bogus":
			return nil, fmt.Errorf("type %q: %w", typ, admin.ErrBadRequest)
		}
		return map[string]string{"node": node, "type": typ}, nil
	}
	url := start(t, opts)
	got := do(t, http.MethodGet, url+"/api/v1/gateways/egress/config_dump?type=clusters")
	require.Equal(t, http.StatusOK, got.code)
	require.JSONEq(t, `{"node": "egress", "type": "clusters"}`, got.body)
	got = do(t, http.MethodGet, url+"/api/v1/gateways/egress/config_dump?type=bogus")
	require.Equal(t, http.StatusBadRequest, got.code)
	require.JSONEq(t, `{"error": "type \"bogus\": bad request"}`, got.body)
	got = do(t, http.MethodGet, url+"/api/v1/gateways/ingress/config_dump")
	require.Equal(t, http.StatusNotFound, got.code)
	require.JSONEq(t, `{"error": "no gateway \"ingress\": not found"}`, got.body)
}
