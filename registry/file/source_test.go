package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
)

// Generous: a loaded CI machine may take its time, and nothing here waits
// for longer than the event it expects.
const wait = 20 * time.Second

type running struct {
	t       *testing.T
	path    string
	updates chan []model.Export
	src     *Source
}

// start runs a Source on path, whose file the caller has written, and
// stops it when the test ends.
func start(t *testing.T, path string) *running {
	t.Helper()
	r := &running{t: t, path: path, updates: make(chan []model.Export, 16), src: New(path, 0, zaptest.NewLogger(t))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.src.Run(ctx, func(s []model.Export) { r.updates <- s }) }()
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

// noUpdate checks that no update is pending: callers first wait for the
// read that would have made one.
func (r *running) noUpdate() {
	r.t.Helper()
	select {
	case s := <-r.updates:
		r.t.Fatalf("unexpected update %v", s)
	default:
	}
}

// waitStatus waits until the source's status passes ok, and returns it.
func (r *running) waitStatus(what string, ok func(registry.SourceStatus) bool) registry.SourceStatus {
	r.t.Helper()
	var st registry.SourceStatus
	require.Eventually(r.t, func() bool { st = r.src.Status(); return ok(st) }, wait, 5*time.Millisecond, what)
	return st
}

// failing waits for a read that keeps the last good set, and returns its
// problem.
func (r *running) failing() error {
	r.t.Helper()
	return r.waitStatus("a problem", func(st registry.SourceStatus) bool { return st.Err != nil }).Err
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
	require.ErrorContains(t, r.failing(), `services.yaml:8: services[0].ports[0].protocol: "FOO" is not one of`)
	r.noUpdate()

	replace(t, path, withEndpointPort("9081"))
	require.Equal(t, uint32(9081), endpointPort(t, r.next()))
	require.NoError(t, r.src.Status().Err)
}

func TestSourceKeepsLastSetWhenFileGoes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	write(t, path, base)
	r := start(t, path)
	r.next()

	require.NoError(t, os.Remove(path))
	require.ErrorContains(t, r.failing(), "no such file or directory")
	r.noUpdate()

	// A truncated file is how an in-place write begins: not an empty set.
	write(t, path, "")
	st := r.waitStatus("the empty file met", func(st registry.SourceStatus) bool { return errors.Is(st.Err, errEmpty) })
	require.EqualError(t, st.Err, `registry file is empty; the last good set stays (write "services: []" to export nothing)`)
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
	st := r.waitStatus("a read", func(st registry.SourceStatus) bool { return st.Reads > 0 })
	require.NoError(t, st.Err)
	r.noUpdate()
}

func TestSourceFirstStateErrors(t *testing.T) {
	dir := t.TempDir()
	err := New(filepath.Join(dir, "missing.yaml"), 0, zaptest.NewLogger(t)).Run(context.Background(), func([]model.Export) { t.Fatal("update") })
	require.ErrorContains(t, err, "registry file: open "+filepath.Join(dir, "missing.yaml")+": no such file or directory")

	path := filepath.Join(dir, "services.yaml")
	write(t, path, strings.Replace(base, "port: 8080", "port: -1", 1))
	err = New(path, 0, zaptest.NewLogger(t)).Run(context.Background(), func([]model.Export) { t.Fatal("update") })
	require.ErrorContains(t, err, path+":7: services[0].ports[0].port: -1 is not a port 1..65535")

	err = New(filepath.Join(dir, "nodir", "services.yaml"), 0, zaptest.NewLogger(t)).Run(context.Background(), func([]model.Export) { t.Fatal("update") })
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
	broken := strings.Replace(base, "protocol: HTTP", "protocol: FOO", 1)
	replace(t, path, broken)
	r.failing()
	reads := r.src.Status().Reads

	logFile, err := os.Create(filepath.Join(dir, "agent.log"))
	require.NoError(t, err)
	defer logFile.Close()
	for range 5 {
		_, err := logFile.WriteString("a line\n")
		require.NoError(t, err)
		time.Sleep(150 * time.Millisecond) // past the hold-off: each write would be a read of its own
	}
	replace(t, path, broken) // the same problem again
	st := r.waitStatus("the file read again", func(st registry.SourceStatus) bool { return st.Reads > reads })
	require.Equal(t, reads+1, st.Reads, "the log file's writes were not reads of the registry file")
	require.Equal(t, 1, st.Reported, "the same problem is reported once")

	// Another problem is reported.
	replace(t, path, strings.Replace(base, "protocol: HTTP", "protocol: BAR", 1))
	st = r.waitStatus("the second problem", func(st registry.SourceStatus) bool { return st.Reported == 2 })
	require.ErrorContains(t, st.Err, `"BAR" is not one of`)
	r.noUpdate()
}
