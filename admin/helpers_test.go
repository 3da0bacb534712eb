package admin_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/internal/servetest"
)

// options are complete and answer from fixed values; tests change what
// they are about.
func options(t *testing.T) admin.Options {
	return admin.Options{
		Listen:   "127.0.0.1:0",
		Gatherer: prometheus.NewRegistry(),
		Ready:    func() error { return nil },
		Status: func(context.Context) (any, error) {
			return map[string]any{"trustDomain": "mesh-a.example", "peers": 2}, nil
		},
		Imports: func(context.Context) (any, error) {
			return []map[string]any{{"name": "web", "peer": "mesh-b"}}, nil
		},
		Exports: func(context.Context) (any, error) {
			return nil, errors.New("the catalog is not loaded yet")
		},
		Log: zaptest.NewLogger(t),
	}
}

// start serves opts on 127.0.0.1 and a free port until the test ends, and
// checks that Serve then returns cleanly. It returns the base URL.
func start(t *testing.T, opts admin.Options) string {
	t.Helper()
	s, err := admin.New(opts)
	require.NoError(t, err)
	return "http://" + servetest.Serve(t, s.Serve)
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{code: resp.StatusCode, header: resp.Header, body: string(b)}
}
