package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/model"
)

// Generous: a loaded CI machine may take its time, and nothing here waits
// for longer than the event it expects.
const wait = 20 * time.Second

type running struct {
	t       *testing.T
	path    string
	updates chan []model.Export
	logs    *observer.ObservedLogs
}

// start runs a Source on path, whose file the caller has written, and
// stops it when the test ends.
func start(t *testing.T, path string) *running {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	r := &running{t: t, path: path, updates: make(chan []model.Export, 16), logs: logs}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(path, log).Run(ctx, func(s []model.Export) { r.updates <- s }) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return r
}

// next waits for the next update.
func (r *running) next() []model.Export {
	r.t.Helper()
	select {
	case s := <-r.updates:
		return s
	case <-time.After(wait):
		r.t.Fatal("no update")
		return nil
	}
}

// noUpdate checks that no update is pending: callers first wait for the log
// line that proves the source has read the file.
func (r *running) noUpdate() {
	r.t.Helper()
	select {
	case s := <-r.updates:
		r.t.Fatalf("unexpected update %v", s)
	default:
	}
}

// waitLog waits until more than n entries have message msg.
func (r *running) waitLog(msg string, n int) {
	r.t.Helper()
	require.Eventually(r.t, func() bool { return r.logs.FilterMessage(msg).Len() > n }, wait, 5*time.Millisecond, "no log %q", msg)
}

// endpointPort is the first endpoint port of the only service in s.
func endpointPort(t *testing.T, s []model.Export) uint32 {
	t.Helper()
	require.Len(t, s, 1)
	return s[0].Ports[0].Endpoints[0].Port
}

func withEndpointPort(p string) string { return strings.Replace(base, "port: 9080", "port: "+p, 1) }

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// replace writes content beside path and renames it over path, as editors
// and most tools that save atomically do.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	write(t, tmp, content)
	require.NoError(t, os.Rename(tmp, path))
}

func TestSourceFollowsEdits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	write(t, path, base)
	r := start(t, path)
	require.Equal(t, uint32(9080), endpointPort(t, r.next()))

	write(t, path, withEndpointPort("9081")) // in place
	require.Equal(t, uint32(9081), endpointPort(t, r.next()))

	replace(t, path, withEndpointPort("9082"))
	require.Equal(t, uint32(9082), endpointPort(t, r.next()))

	replace(t, path, "services: []\n")
	require.Empty(t, r.next())
}

// A Kubernetes ConfigMap volume: the file is a symlink through ..data, and
// an update swaps ..data to a new directory with one rename.
func TestSourceFollowsConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o755))
		write(t, filepath.Join(dir, name, "services.yaml"), content)
		require.NoError(t, os.Symlink(name, filepath.Join(dir, "..data_tmp")))
		require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	}
	version("..v1", base)
	require.NoError(t, os.Symlink("..data/services.yaml", filepath.Join(dir, "services.yaml")))
	r := start(t, filepath.Join(dir, "services.yaml"))
	require.Equal(t, uint32(9080), endpointPort(t, r.next()))

	version("..v2", withEndpointPort("9090"))
	require.Equal(t, uint32(9090), endpointPort(t, r.next()))
}

func TestSourceKeepsLastSetOnBadEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	write(t, path, base)
	r := start(t, path)
	r.next()

	replace(t, path, strings.Replace(base, "protocol: HTTP", "protocol: FOO", 1))
	r.waitLog("registry file not reloaded; the last good set stays", 0)
	r.noUpdate()
	e := r.logs.FilterMessage("registry file not reloaded; the last good set stays").All()[0]
	require.Equal(t, zapcore.WarnLevel, e.Level)
	require.Contains(t, e.ContextMap()["error"], `services.yaml:8: services[0].ports[0].protocol: "FOO" is not one of`)

	replace(t, path, withEndpointPort("9081"))
	require.Equal(t, uint32(9081), endpointPort(t, r.next()))
	r.waitLog("registry file readable again", 0)
}

func TestSourceKeepsLastSetWhenFileGoes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	write(t, path, base)
	r := start(t, path)
	r.next()

	require.NoError(t, os.Remove(path))
	r.waitLog("registry file not reloaded; the last good set stays", 0)
	r.noUpdate()
	require.Contains(t, r.logs.FilterMessage("registry file not reloaded; the last good set stays").All()[0].ContextMap()["error"], "no such file")

	// A truncated file is how an in-place write begins: not an empty set.
	write(t, path, "")
	r.waitLog(`registry file is empty; the last good set stays (write "services: []" to export nothing)`, 0)
	r.noUpdate()

	write(t, path, withEndpointPort("9081"))
	require.Equal(t, uint32(9081), endpointPort(t, r.next()))
}

func TestSourceSkipsUnchangedRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	write(t, path, base)
	r := start(t, path)
	r.next()

	// Same services, other bytes: a comment changes nothing that is exported.
	replace(t, path, "# touched\n"+base)
	r.waitLog("registry file read, unchanged", 0)
	r.noUpdate()
}

func TestSourceFirstStateErrors(t *testing.T) {
	dir := t.TempDir()
	err := New(filepath.Join(dir, "missing.yaml"), zaptest.NewLogger(t)).Run(context.Background(), func([]model.Export) { t.Fatal("update") })
	require.ErrorContains(t, err, "registry file: open "+filepath.Join(dir, "missing.yaml")+": no such file or directory")

	path := filepath.Join(dir, "services.yaml")
	write(t, path, strings.Replace(base, "port: 8080", "port: -1", 1))
	err = New(path, zaptest.NewLogger(t)).Run(context.Background(), func([]model.Export) { t.Fatal("update") })
	require.ErrorContains(t, err, path+":7: services[0].ports[0].port: -1 is not a port 1..65535")

	err = New(filepath.Join(dir, "nodir", "services.yaml"), zaptest.NewLogger(t)).Run(context.Background(), func([]model.Export) { t.Fatal("update") })
	require.ErrorContains(t, err, "watching its directory")
}

// A log file written beside the registry file is not the registry file:
// a broken registry file is reported once, not on every line logged, and
// again only when it changes.
func TestSourceReportsEachProblemOnceAndIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "services.yaml")
	write(t, path, base)
	r := start(t, path)
	r.next()
	warnings := func() int { return r.logs.FilterLevelExact(zapcore.WarnLevel).Len() }

	broken := strings.Replace(base, "protocol: HTTP", "protocol: FOO", 1)
	replace(t, path, broken)
	require.Eventually(t, func() bool { return warnings() == 1 }, wait, 5*time.Millisecond)

	logFile, err := os.Create(filepath.Join(dir, "agent.log"))
	require.NoError(t, err)
	defer logFile.Close()
	for i := range 5 {
		_, err := logFile.WriteString("a line\n")
		require.NoError(t, err)
		time.Sleep(150 * time.Millisecond) // past the hold-off: each write would be a read of its own
		if i == 2 {
			write(t, path, broken) // the same problem again
		}
	}
	// Another problem is reported; then nothing else was.
	replace(t, path, strings.Replace(base, "protocol: HTTP", "protocol: BAR", 1))
	require.Eventually(t, func() bool { return warnings() >= 2 }, wait, 5*time.Millisecond)
	require.Equal(t, 2, warnings())
	require.Contains(t, r.logs.FilterLevelExact(zapcore.WarnLevel).All()[1].ContextMap()["error"], `"BAR" is not one of`)
	r.noUpdate()
}
