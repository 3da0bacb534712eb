package admin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/meshfed/meshfed/admin"
)

func TestLogLevelReadAndChangedFromLoopback(t *testing.T) {
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	opts := options(t)
	opts.LogLevel = level
	url := start(t, opts)

	a := do(t, http.MethodGet, url+"/api/v1/loglevel")
	require.Equal(t, http.StatusOK, a.code)
	require.JSONEq(t, `{"level":"info"}`, a.body)

	req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, url+"/api/v1/loglevel", strings.NewReader(`{"level":"debug"}`))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, zapcore.DebugLevel, level.Level())

	require.Equal(t, http.StatusMethodNotAllowed, do(t, http.MethodPost, url+"/api/v1/loglevel").code)
}

// An admin server that listens beyond loopback (allowNonLoopback) still
// lets only the host itself change the level.
func TestLogLevelRefusedFromAnotherHost(t *testing.T) {
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	opts := options(t)
	opts.LogLevel = level
	opts.Listen, opts.AllowNonLoopback = "0.0.0.0:19100", true
	s, err := admin.New(opts)
	require.NoError(t, err)
	for _, method := range []string{http.MethodGet, http.MethodPut} {
		req := httptest.NewRequest(method, "/api/v1/loglevel", strings.NewReader(`{"level":"debug"}`))
		req.RemoteAddr = "192.0.2.7:40000"
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		require.Equal(t, http.StatusForbidden, w.Code)
		require.JSONEq(t, `{"error": "/api/v1/loglevel answers requests from loopback only"}`, w.Body.String())
	}
	require.Equal(t, zapcore.InfoLevel, level.Level())
}

func TestLogLevelLeftOutWithoutALevel(t *testing.T) {
	url := start(t, options(t))
	require.Equal(t, http.StatusNotFound, do(t, http.MethodGet, url+"/api/v1/loglevel").code)
}
