package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/internal/servetest"
)

// startObserved starts an agent whose log is kept for the test to read,
// and also written to the test's log.
func startObserved(t *testing.T, c *config.Config, path string) (*Agent, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	a, err := New(context.Background(), c, log, prometheus.NewRegistry())
	require.NoError(t, err)
	a.ConfigPath = path
	servetest.Start(t, a.Listening(), a.Run)
	return a, logs
}

// get answers path of a's admin API, whatever its status.
func get(t *testing.T, a *Agent, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+a.AdminAddr().String()+path, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// requireNowhere checks that s is in no answer of the admin API and in no
// log entry, message or field.
func requireNowhere(t *testing.T, a *Agent, logs *observer.ObservedLogs, s string) {
	t.Helper()
	for _, path := range []string{"/api/v1/status", "/api/v1/exports", "/readyz"} {
		code, body := get(t, a, http.MethodGet, path)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
		require.NotContains(t, body, s, path)
	}
	for _, e := range logs.All() {
		require.NotContains(t, e.Message, s)
		for k, v := range e.ContextMap() {
			require.NotContains(t, fmt.Sprint(v), s, k)
		}
	}
}

// An attacker who may write the registry file's folder links the registry
// file to a secret file elsewhere, then to the agent's private key in a
// folder below: neither the status API, nor the readiness, nor the log,
// nor the answer to a reload ever holds a byte of either, the status
// stays 200, and the last good exports stay.
func TestLinkedSecretFilesNeverReachTheStatusOrTheLog(t *testing.T) {
	secrets := t.TempDir()
	shadow := filepath.Join(secrets, "shadow")
	require.NoError(t, os.WriteFile(shadow, []byte("root:$6$recognisable.secret.salt$recognisable.secret.hash:19000:0:99999:7:::\n"), 0o600))
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	services := filepath.Join(ma.dir, "services.yaml")
	require.NoError(t, os.WriteFile(services, []byte(registryFile), 0o600))
	path := filepath.Join(ma.dir, "meshfed.yaml")
	a, logs := startObserved(t, ma.config(t, mb, "", "exports: {file: services.yaml}\n"), path)
	require.Eventually(t, func() bool { return !a.ExportSource().LastSync.IsZero() }, waitFor, 10*time.Millisecond)
	key, err := os.ReadFile(filepath.Join(ma.dir, "certs", "agent-key.pem"))
	require.NoError(t, err)
	keyLine := strings.Split(string(key), "\n")[1] // the first line of the key's body

	relink := func(target string) {
		tmp := services + ".tmp"
		require.NoError(t, os.Symlink(target, tmp))
		require.NoError(t, os.Rename(tmp, services))
	}
	relink(shadow)
	require.Eventually(t, func() bool { return strings.Contains(a.ExportSource().LastError, "outside its folder") }, waitFor, 10*time.Millisecond)
	requireNowhere(t, a, logs, "recognisable")
	require.Equal(t, []string{"inventory"}, exportNames(a), "the last good exports stay")

	relink(filepath.Join("certs", "agent-key.pem")) // inside the folder: read, and refused as YAML
	require.Eventually(t, func() bool { return strings.Contains(a.ExportSource().LastError, "is this a registry file?") }, waitFor, 10*time.Millisecond)
	requireNowhere(t, a, logs, "PRIVATE KEY")
	requireNowhere(t, a, logs, keyLine)

	// A reload that names the linked file is refused, and says why
	// without the file.
	require.NoError(t, os.Symlink(shadow, filepath.Join(ma.dir, "other.yaml")))
	editFile(t, path, "exports: {file: services.yaml}", "exports: {file: other.yaml}")
	code, body := postReload(t, a)
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	require.Contains(t, body, "other.yaml leads to "+shadow+", outside its folder")
	require.NotContains(t, body, "recognisable")
	requireNowhere(t, a, logs, "recognisable")
}

// A reload (SIGHUP does the same) of a configuration that became a
// billion laughs is refused before anything expands it, and the running
// configuration stays.
func TestReloadRefusesAnAliasBomb(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	path := filepath.Join(ma.dir, "meshfed.yaml")
	a := startOperable(t, ma.config(t, mb, ""), path)
	var b strings.Builder
	b.WriteString("trustDomain: mesh-a.example\nlaughs:\n  l0: &l0 [" + strings.Repeat(`"`+strings.Repeat("lol ", 26)+`", `, 8) + `"lol"]` + "\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "  l%d: &l%d [%s*l%d]\n", i, i, strings.Repeat(fmt.Sprintf("*l%d,    ", i-1), 8), i-1)
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	code, body := postReload(t, a)
	runtime.ReadMemStats(&after)
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	require.Contains(t, body, path+":8: error: too many YAML aliases: they would add more than 250000 values to the document")
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(100<<20))
	require.Equal(t, "mesh-a.example", a.current.TrustDomain, "the running configuration stays")
}
