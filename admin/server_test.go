package admin_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/admin"
)

func TestProbes(t *testing.T) {
	var synced atomic.Bool
	opts := options(t)
	opts.Ready = func() error {
		if !synced.Load() {
			return errors.New("no peer has synced yet")
		}
		return nil
	}
	opts.Live = func() error { return errors.New("the store is closed") }
	url := start(t, opts)

	got := do(t, http.MethodGet, url+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, got.code)
	require.Equal(t, "no peer has synced yet\n", got.body)
	require.Equal(t, "text/plain; charset=utf-8", got.header.Get("Content-Type"))

	got = do(t, http.MethodGet, url+"/healthz")
	require.Equal(t, http.StatusServiceUnavailable, got.code)
	require.Equal(t, "the store is closed\n", got.body)

	// Ready is asked on every request.
	synced.Store(true)
	got = do(t, http.MethodGet, url+"/readyz")
	require.Equal(t, http.StatusOK, got.code)
	require.Equal(t, "ok\n", got.body)
}

// Degraded is still ready: the status says ready, the body says why not
// whole.
func TestReadyButDegraded(t *testing.T) {
	opts := options(t)
	opts.Degraded = func() []string { return []string{"consul: unreachable", "dns: off"} }
	url := start(t, opts)
	got := do(t, http.MethodGet, url+"/readyz")
	require.Equal(t, http.StatusOK, got.code)
	require.Equal(t, "ok\ndegraded: consul: unreachable\ndegraded: dns: off\n", got.body)
	got = do(t, http.MethodGet, url+"/healthz")
	require.Equal(t, "ok\n", got.body)
}

func TestHealthzWithoutLive(t *testing.T) {
	url := start(t, options(t))
	got := do(t, http.MethodGet, url+"/healthz")
	require.Equal(t, http.StatusOK, got.code)
	require.Equal(t, "ok\n", got.body)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshfed_test_events_total", Help: "Events of the test."})
	reg.MustRegister(c)
	c.Add(3)
	opts := options(t)
	opts.Gatherer = reg
	got := do(t, http.MethodGet, start(t, opts)+"/metrics")
	require.Equal(t, http.StatusOK, got.code)
	require.Equal(t, "# HELP meshfed_test_events_total Events of the test.\n# TYPE meshfed_test_events_total counter\nmeshfed_test_events_total 3\n", got.body)
}

func TestAPI(t *testing.T) {
	url := start(t, options(t))
	tests := []struct {
		path string
		code int
		body string
	}{
		{path: "/api/v1/status", code: http.StatusOK, body: "{\n  \"peers\": 2,\n  \"trustDomain\": \"mesh-a.example\"\n}\n"},
		{path: "/api/v1/imports", code: http.StatusOK, body: "[\n  {\n    \"name\": \"web\",\n    \"peer\": \"mesh-b\"\n  }\n]\n"},
		{path: "/api/v1/exports", code: http.StatusInternalServerError, body: "{\n  \"error\": \"the catalog is not loaded yet\"\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := do(t, http.MethodGet, url+tt.path)
			require.Equal(t, tt.code, got.code)
			require.Equal(t, tt.body, got.body)
			require.Equal(t, "application/json", got.header.Get("Content-Type"))
			require.Equal(t, "no-store", got.header.Get("Cache-Control"))

			head := do(t, http.MethodHead, url+tt.path)
			require.Equal(t, tt.code, head.code)
			require.Empty(t, head.body)
		})
	}
}

func TestAPIEndpointLeftOut(t *testing.T) {
	opts := options(t)
	opts.Exports = nil
	got := do(t, http.MethodGet, start(t, opts)+"/api/v1/exports")
	require.Equal(t, http.StatusNotFound, got.code)
}

func TestOnlyGETAndHEAD(t *testing.T) {
	url := start(t, options(t))
	for _, path := range []string{"/api/v1/status", "/healthz", "/readyz", "/metrics"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			got := do(t, method, url+path)
			require.Equal(t, http.StatusMethodNotAllowed, got.code, method+" "+path)
			require.Equal(t, "GET, HEAD", got.header.Get("Allow"), method+" "+path)
		}
	}
}

func TestPProf(t *testing.T) {
	off := start(t, options(t))
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		require.Equal(t, http.StatusNotFound, do(t, http.MethodGet, off+path).code, path)
	}

	opts := options(t)
	opts.PProf = true
	on := start(t, opts)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		require.Equal(t, http.StatusOK, do(t, http.MethodGet, on+path).code, path)
	}
}

func TestPrivateKeyIsNeverServed(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	opts := options(t)
	opts.Log = zap.New(core)
	opts.Status = func(context.Context) (any, error) {
		return map[string]string{"key": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"}, nil
	}
	opts.Imports = func(context.Context) (any, error) {
		return nil, errors.New("cannot parse -----BEGIN PRIVATE KEY----- block")
	}
	url := start(t, opts)

	for _, path := range []string{"/api/v1/status", "/api/v1/imports"} {
		got := do(t, http.MethodGet, url+path)
		require.Equal(t, http.StatusInternalServerError, got.code, path)
		require.Equal(t, fmt.Sprintf("{\n  \"error\": \"refusing to serve %s: the answer holds private key material\"\n}\n", path), got.body)
	}
	var entries []string
	for _, e := range logs.All() {
		entries = append(entries, fmt.Sprintf("%s %v", e.Message, e.ContextMap()))
	}
	require.Equal(t, []string{
		"refusing to serve an admin answer that holds private key material map[path:/api/v1/status]",
		"refusing to serve an admin answer that holds private key material map[path:/api/v1/imports]",
	}, entries)
}

func TestNewRefuses(t *testing.T) {
	shortToken := filepath.Join(t.TempDir(), "short.token")
	require.NoError(t, os.WriteFile(shortToken, []byte("s3cret\n"), 0o600))
	missing := filepath.Join(t.TempDir(), "none.token")
	tests := []struct {
		name string
		edit func(*admin.Options)
		err  string
	}{
		{name: "every interface", edit: func(o *admin.Options) { o.Listen = "0.0.0.0:19100" }, err: `admin.listen: "0.0.0.0:19100" is not a loopback address; set admin.allowNonLoopback to serve other hosts`},
		{name: "a private address", edit: func(o *admin.Options) { o.Listen = "10.0.0.5:19100" }, err: `admin.listen: "10.0.0.5:19100" is not a loopback address; set admin.allowNonLoopback to serve other hosts`},
		{name: "a host name", edit: func(o *admin.Options) { o.Listen = "localhost:19100" }, err: `admin.listen: "localhost:19100" is not an IP address and port such as 127.0.0.1:19100`},
		{name: "no address", edit: func(o *admin.Options) { o.Listen = "" }, err: `admin.listen: "" is not an IP address and port such as 127.0.0.1:19100`},
		{name: "beyond loopback without a token", edit: func(o *admin.Options) { o.Listen, o.AllowNonLoopback = "0.0.0.0:19100", true },
			err: "admin.tokenFile: required with admin.allowNonLoopback: other hosts must present a bearer token, read from this file"},
		{name: "a short token", edit: func(o *admin.Options) { o.TokenFile = shortToken },
			err: fmt.Sprintf("admin.tokenFile: %[1]s holds 6 bytes; a token needs at least 32 (openssl rand -hex 32 > %[1]s)", shortToken)},
		{name: "no token file", edit: func(o *admin.Options) { o.TokenFile = missing },
			err: fmt.Sprintf("admin.tokenFile: open %s: no such file or directory", missing)},
		{name: "no gatherer", edit: func(o *admin.Options) { o.Gatherer = nil }, err: "admin: Options.Gatherer is nil"},
		{name: "no readiness", edit: func(o *admin.Options) { o.Ready = nil }, err: "admin: Options.Ready is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := options(t)
			tt.edit(&opts)
			_, err := admin.New(opts)
			require.EqualError(t, err, tt.err)
		})
	}
}

func TestNewAccepts(t *testing.T) {
	for _, listen := range []string{"[::1]:19100", "127.0.0.2:0"} {
		opts := options(t)
		opts.Listen = listen
		_, err := admin.New(opts)
		require.NoError(t, err, listen)
	}
	opts := options(t)
	opts.Listen, opts.AllowNonLoopback, opts.TokenFile = "0.0.0.0:19100", true, tokenFile(t)
	_, err := admin.New(opts)
	require.NoError(t, err)
}

func TestListen(t *testing.T) {
	opts := options(t)
	opts.Listen = "127.0.0.1:0"
	s, err := admin.New(opts)
	require.NoError(t, err)
	lis, err := s.Listen()
	require.NoError(t, err)
	t.Cleanup(func() { _ = lis.Close() })

	opts.Listen = lis.Addr().String()
	taken, err := admin.New(opts)
	require.NoError(t, err)
	_, err = taken.Listen()
	require.EqualError(t, err, fmt.Sprintf("admin.listen: listen tcp %s: bind: address already in use", lis.Addr()))
}
