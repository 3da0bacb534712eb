package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
	return send(t, req)
}

// doJSON sends body as JSON, as the admin client does.
func doJSON(t *testing.T, method, url, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	return send(t, req)
}

func send(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// testToken is the bearer token of tokenFile.
const testToken = "0123456789abcdef0123456789abcdef"

// tokenFile writes testToken, with a newline as editors leave one, to a
// file of its own.
func tokenFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.token")
	require.NoError(t, os.WriteFile(path, []byte(testToken+"\n"), 0o600))
	return path
}

// errJSON is the answer {"error": msg}.
func errJSON(msg string) string {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return string(b)
}
