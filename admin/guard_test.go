package admin_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/meshfed/meshfed/admin"
)

// fromElsewhere are the headers of a JSON request that holds the token,
// as a tool on another host sends it.
var fromElsewhere = map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + testToken}

// ask sends req to h as if over the network: from remote, to host.
func ask(h http.Handler, method, path, remote, host string, header map[string]string, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr, req.Host = remote, host
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// A request whose Host is not a name of the agent, as a page that rebinds
// its own DNS name to the agent's address sends, is refused with 421
// before any route sees it, the probes included; localhost, loopback and
// the listen address, and admin.hosts in any case, are served.
func TestForgedHostIsRefused(t *testing.T) {
	reloads := 0
	opts := options(t)
	opts.Reload = func(context.Context) (any, error) { reloads++; return map[string]any{}, nil }
	opts.Hosts = []string{"agent.internal"}
	opts.Listen = "127.0.0.2:19100"
	s, err := admin.New(opts)
	require.NoError(t, err)
	json := map[string]string{"Content-Type": "application/json"}

	for _, host := range []string{"evil.example", "evil.example:19100", "127.0.0.2.nip.io:19100", "192.0.2.1:19100", "agent.internal.evil.example", ""} {
		for _, r := range []struct{ method, path string }{{"GET", "/api/v1/status"}, {"GET", "/healthz"}, {"GET", "/metrics"}, {"POST", "/api/v1/reload"}} {
			w := ask(s.Handler(), r.method, r.path, "127.0.0.1:40000", host, json, "{}")
			require.Equal(t, http.StatusMisdirectedRequest, w.Code, "%s %s Host %q", r.method, r.path, host)
			require.JSONEq(t, errJSON(fmt.Sprintf("Host %q is not a name of this agent's admin API: it answers to localhost, the IP addresses of admin.listen and admin.hosts", host)), w.Body.String())
		}
	}
	require.Zero(t, reloads)

	for _, host := range []string{"127.0.0.2:19100", "127.0.0.1:19100", "localhost:19100", "LOCALHOST.", "[::1]:19100", "agent.internal:19100", "Agent.Internal"} {
		w := ask(s.Handler(), "GET", "/api/v1/status", "127.0.0.1:40000", host, nil, "")
		require.Equal(t, http.StatusOK, w.Code, "Host %q", host)
	}

	// Listening on every address, any of the host's IP addresses may be
	// the one dialed; a name still must be listed.
	opts.Listen, opts.AllowNonLoopback, opts.TokenFile = "0.0.0.0:19100", true, tokenFile(t)
	s, err = admin.New(opts)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, ask(s.Handler(), "GET", "/healthz", "192.0.2.7:40000", "192.0.2.1:19100", nil, "").Code)
	require.Equal(t, http.StatusMisdirectedRequest, ask(s.Handler(), "GET", "/healthz", "192.0.2.7:40000", "evil.example:19100", nil, "").Code)
}

// A browser can post across sites only what a form can: no JSON, no
// custom header, unless a CORS preflight agrees, which this API never
// does. Such a request to a route that changes state is refused, and so
// is a JSON one that says it comes from another site; the route never
// runs.
func TestCrossSiteRequestIsRefused(t *testing.T) {
	reloads := 0
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	opts := options(t)
	opts.Reload = func(context.Context) (any, error) { reloads++; return map[string]any{}, nil }
	opts.LogLevel = &level
	url := start(t, opts)

	for _, tc := range []struct {
		name, contentType, site, origin string
		code                            int
		body                            string
	}{
		{"text/plain form", "text/plain", "cross-site", "", http.StatusForbidden, `{"error": "/api/v1/reload refuses a request from another site"}`},
		{"text/plain without fetch metadata", "text/plain", "", "", http.StatusUnsupportedMediaType, `{"error": "/api/v1/reload takes Content-Type application/json, not \"text/plain\""}`},
		{"urlencoded form", "application/x-www-form-urlencoded", "", "", http.StatusUnsupportedMediaType, `{"error": "/api/v1/reload takes Content-Type application/json, not \"application/x-www-form-urlencoded\""}`},
		{"no content type", "", "", "", http.StatusUnsupportedMediaType, `{"error": "/api/v1/reload takes Content-Type application/json, not \"\""}`},
		{"JSON from another site", "application/json", "cross-site", "", http.StatusForbidden, `{"error": "/api/v1/reload refuses a request from another site"}`},
		{"JSON from another origin", "application/json", "", "http://evil.example", http.StatusForbidden, `{"error": "/api/v1/reload refuses a request from another site"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url+"/api/v1/reload", strings.NewReader("{}"))
			require.NoError(t, err)
			for k, v := range map[string]string{"Content-Type": tc.contentType, "Sec-Fetch-Site": tc.site, "Origin": tc.origin} {
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			got := send(t, req)
			require.Equal(t, tc.code, got.code)
			require.JSONEq(t, tc.body, got.body)
		})
	}
	require.Zero(t, reloads)

	// What `curl -X PUT -d level=debug` sends.
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, url+"/api/v1/loglevel", strings.NewReader("level=debug"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	require.Equal(t, http.StatusUnsupportedMediaType, send(t, req).code)
	require.Equal(t, zapcore.InfoLevel, level.Level())

	// The project's client sends JSON.
	require.NoError(t, (&admin.Client{BaseURL: url}).Post(context.Background(), "/api/v1/reload", nil))
	require.Equal(t, 1, reloads)
	got := doJSON(t, http.MethodPost, url+"/api/v1/reload", "")
	require.Equal(t, http.StatusOK, got.code)
}

// Beyond loopback (allowNonLoopback), every route but the probes needs
// admin.tokenFile's token, pprof included; the probes answer anyone, but
// only "ok" or "not ready" without it. Routes that change state stay
// loopback's, token or not.
func TestBeyondLoopbackNeedsTheToken(t *testing.T) {
	opts := options(t)
	opts.Listen, opts.AllowNonLoopback, opts.TokenFile = "0.0.0.0:19100", true, tokenFile(t)
	opts.PProf = true
	opts.Degraded = func() []string { return []string{"consul: unreachable at 10.0.0.9:8500"} }
	opts.Reload = func(context.Context) (any, error) { return map[string]any{}, nil }
	s, err := admin.New(opts)
	require.NoError(t, err)
	const remote, host = "192.0.2.7:40000", "192.0.2.1:19100"
	bearer := func(token string) map[string]string { return map[string]string{"Authorization": "Bearer " + token} }

	for _, path := range []string{"/api/v1/status", "/api/v1/imports", "/metrics", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		for name, header := range map[string]map[string]string{
			"no token": nil, "another token": bearer(strings.Repeat("x", 32)), "basic": {"Authorization": "Basic " + testToken},
		} {
			w := ask(s.Handler(), "GET", path, remote, host, header, "")
			require.Equal(t, http.StatusUnauthorized, w.Code, "%s, %s", path, name)
			require.Equal(t, `Bearer realm="meshfed"`, w.Header().Get("WWW-Authenticate"))
			require.JSONEq(t, fmt.Sprintf(`{"error": "%s answers a client beyond loopback only with the bearer token of admin.tokenFile (Authorization: Bearer <token>)"}`, path), w.Body.String())
		}
		require.Equal(t, http.StatusOK, ask(s.Handler(), "GET", path, remote, host, bearer(testToken), "").Code, path)
		require.Equal(t, http.StatusOK, ask(s.Handler(), "GET", path, "127.0.0.1:40000", "127.0.0.1:19100", nil, "").Code, path)
	}

	w := ask(s.Handler(), "GET", "/readyz", remote, host, nil, "")
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "ok\n", w.Body.String(), "the reasons are for the token's holders")
	w = ask(s.Handler(), "GET", "/readyz", remote, host, bearer(testToken), "")
	require.Equal(t, "ok\ndegraded: consul: unreachable at 10.0.0.9:8500\n", w.Body.String())
	require.Equal(t, "ok\n", ask(s.Handler(), "GET", "/healthz", remote, host, nil, "").Body.String())

	opts.Ready = func() error { return fmt.Errorf("starting: waiting for the trust bundles of mesh-b") }
	s, err = admin.New(opts)
	require.NoError(t, err)
	w = ask(s.Handler(), "GET", "/readyz", remote, host, nil, "")
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "not ready\n", w.Body.String())
	w = ask(s.Handler(), "GET", "/readyz", remote, host, bearer(testToken), "")
	require.Equal(t, "starting: waiting for the trust bundles of mesh-b\n", w.Body.String())

	w = ask(s.Handler(), "POST", "/api/v1/reload", remote, host, map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}, "{}")
	require.Equal(t, http.StatusForbidden, w.Code)
}

// repeated reads n bytes of 'a' without holding them.
type repeated struct{ n int64 }

var chunk = []byte(strings.Repeat("a", 64<<10))

func (r *repeated) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	n := copy(p, chunk[:min(int64(len(chunk)), r.n)])
	r.n -= int64(n)
	return n, nil
}

// A body over 1 MiB is refused with 413 whether its length is declared or
// not, without being echoed, and the level stays. Five bodies of 200 MB
// cost the process a few MB of allocation, read from the process.
func TestLargeBodyIsRefusedAndNotEchoed(t *testing.T) {
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	opts := options(t)
	opts.LogLevel = &level
	url := start(t, opts)
	put := func(body io.Reader, length int64) answer {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, url+"/api/v1/loglevel", body)
		require.NoError(t, err)
		req.ContentLength = length
		req.Header.Set("Content-Type", "application/json")
		return send(t, req)
	}

	const twoMiB = 2 << 20
	value := `{"level":"` + strings.Repeat("a", twoMiB) + `"}`
	got := put(strings.NewReader(value), int64(len(value)))
	require.Equal(t, http.StatusRequestEntityTooLarge, got.code)
	require.JSONEq(t, fmt.Sprintf(`{"error": "the request body is %d bytes, over the 1048576 this API takes"}`, len(value)), got.body)
	got = put(io.MultiReader(strings.NewReader(value)), -1)
	require.Equal(t, http.StatusRequestEntityTooLarge, got.code)
	require.JSONEq(t, `{"error": "the request body is over the 1048576 bytes this API takes"}`, got.body)
	require.Equal(t, zapcore.InfoLevel, level.Level())

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 5 {
		got = put(&repeated{n: 200 << 20}, -1)
		require.Equal(t, http.StatusRequestEntityTooLarge, got.code)
		require.Less(t, len(got.body), 200)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("5 bodies of 200 MB: %.1f MB allocated in the process", float64(allocated)/1e6)
	assert.Less(t, allocated, uint64(32<<20))
}
