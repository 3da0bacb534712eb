package admin_test

import (
	"net/http"
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
	opts.LogLevel = &level
	url := start(t, opts)

	a := do(t, http.MethodGet, url+"/api/v1/loglevel")
	require.Equal(t, http.StatusOK, a.code)
	require.JSONEq(t, `{"level":"info"}`, a.body)
	require.Equal(t, "application/json", a.header.Get("Content-Type"))

	a = doJSON(t, http.MethodPut, url+"/api/v1/loglevel", `{"level":"debug"}`)
	require.Equal(t, http.StatusOK, a.code)
	require.JSONEq(t, `{"level":"debug"}`, a.body)
	require.Equal(t, zapcore.DebugLevel, level.Level())

	a = doJSON(t, http.MethodPut, url+"/api/v1/loglevel", `{"level":"`+strings.Repeat("loud", 100)+`"}`)
	require.Equal(t, http.StatusBadRequest, a.code)
	require.JSONEq(t, `{"error": "level: \"`+strings.Repeat("loud", 16)+`\"... (400 bytes) is not debug, info, warn, error, dpanic, panic or fatal"}`, a.body)
	a = doJSON(t, http.MethodPut, url+"/api/v1/loglevel", `{"level":"info","colour":"blue"}`)
	require.Equal(t, http.StatusBadRequest, a.code)
	require.JSONEq(t, `{"error": "the body is not {\"level\": \"debug|info|warn|error\"}: json: unknown field \"colour\""}`, a.body)
	require.Equal(t, zapcore.DebugLevel, level.Level(), "a refused change leaves the level")

	require.Equal(t, http.StatusMethodNotAllowed, do(t, http.MethodPost, url+"/api/v1/loglevel").code)
}

// An admin server that listens beyond loopback (allowNonLoopback) still
// lets only the host itself change the level.
func TestLogLevelRefusedFromAnotherHost(t *testing.T) {
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	opts := options(t)
	opts.LogLevel = &level
	opts.Listen, opts.AllowNonLoopback, opts.TokenFile = "0.0.0.0:19100", true, tokenFile(t)
	s, err := admin.New(opts)
	require.NoError(t, err)
	for _, method := range []string{http.MethodGet, http.MethodPut} {
		w := ask(s.Handler(), method, "/api/v1/loglevel", "192.0.2.7:40000", "192.0.2.1:19100", fromElsewhere, `{"level":"debug"}`)
		require.Equal(t, http.StatusForbidden, w.Code)
		require.JSONEq(t, `{"error": "/api/v1/loglevel answers requests from loopback only"}`, w.Body.String())
	}
	require.Equal(t, zapcore.InfoLevel, level.Level())
}

func TestLogLevelLeftOutWithoutALevel(t *testing.T) {
	url := start(t, options(t))
	require.Equal(t, http.StatusNotFound, do(t, http.MethodGet, url+"/api/v1/loglevel").code)
}
