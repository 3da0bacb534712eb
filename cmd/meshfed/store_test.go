package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/store"
)

const pageSize = 4096

// fillStore writes a store of 200 imports at path, and returns how far its
// pages reach.
func fillStore(t *testing.T, path string) int {
	t.Helper()
	s, err := store.Open(path)
	require.NoError(t, err)
	var rs []store.Record
	for i := range 200 {
		rs = append(rs, store.Record{Peer: "mesh-b", ResourceID: fmt.Sprintf("svc-%03d", i), Service: bytes.Repeat([]byte{byte(i)}, 700)})
	}
	require.NoError(t, s.PutImports(rs))
	require.NoError(t, s.Close())
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var reach int
	require.NoError(t, db.View(func(tx *bolt.Tx) error { reach = int(tx.Size()); return nil }))
	return reach
}

// damages are the ways the report damaged a store, and the reason each is
// found damaged for.
var damages = []struct {
	name, reason string
	damage       func(b []byte, reach int) []byte
}{
	{"cut in half", "the file is {half} bytes, but its pages reach {reach}: it was cut short", func(b []byte, reach int) []byte { return b[:reach/2] }},
	{"bit-flipped", "", func(b []byte, reach int) []byte {
		for p := 2; p < reach/pageSize; p++ {
			b[p*pageSize+10] ^= 1
		}
		return b
	}},
	{"zeroed data pages", "reading a page failed: invalid freelist page: 0, page type is unknown<00>", func(b []byte, _ int) []byte {
		clear(b[2*pageSize:])
		return b
	}},
	{"not a store", "invalid database", func([]byte, int) []byte { return bytes.Repeat([]byte("x"), 8192) }},
}

// damagedDir is an agent's folder whose store is damaged as d says, and
// the reason the store is refused for.
func damagedDir(t *testing.T, i int) (string, string) {
	t.Helper()
	dir := agentDir(t)
	path := filepath.Join(dir, "meshfed.db")
	reach := fillStore(t, path)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, damages[i].damage(b, reach), 0o600))
	reason := strings.NewReplacer("{half}", fmt.Sprint(reach/2), "{reach}", fmt.Sprint(reach)).Replace(damages[i].reason)
	return dir, reason
}

const wayOut = "; restore it from a backup (meshfed store backup makes one), or move it aside and start again with an empty store: " +
	"peers send their services again when they reconnect, but the egress ports of the imports may change"

// Each damaged store stops meshfed run with the reason and the way out,
// and meshfed check and meshfed store check find it; nothing panics.
func TestDamagedStoreIsNamedByRunCheckAndStoreCheck(t *testing.T) {
	for i, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			dir, reason := damagedDir(t, i)
			path := filepath.Join(dir, "meshfed.db")
			code, last := runAgent(t, dir)
			require.Equal(t, 1, code)
			require.True(t, strings.HasPrefix(last, `meshfed: store.path: store: open "`+path+`": damaged: `+reason), last)
			require.True(t, strings.HasSuffix(last, wayOut), last)

			code, out := checkCommand(t, "check", "--config", filepath.Join(dir, "meshfed.yaml"))
			require.Equal(t, 1, code)
			require.Contains(t, out, filepath.Join(dir, "meshfed.yaml")+": error: store.path: "+path+" is damaged: "+reason)

			var stdout, stderr bytes.Buffer
			code = execute([]string{"store", "check", "--config", filepath.Join(dir, "meshfed.yaml")}, &stdout, &stderr)
			require.Equal(t, 1, code)
			require.Empty(t, stdout.String())
			require.True(t, strings.HasPrefix(stderr.String(), `meshfed: store: check "`+path+`": damaged: `+reason), stderr.String())
			require.NotContains(t, stderr.String(), "panic")
		})
	}
}

// The binary itself, on each damaged store: exit status 1, the one line,
// no panic and no goroutine dump.
func TestRunBinaryOnADamagedStore(t *testing.T) {
	bin := buildMeshfed(t)
	for i, d := range damages {
		dir, reason := damagedDir(t, i)
		cmd := exec.Command(bin, "run", "--config", filepath.Join(dir, "meshfed.yaml"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, d.name)
		require.Equal(t, 1, exit.ExitCode(), d.name)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		last := lines[len(lines)-1]
		require.True(t, strings.HasPrefix(last, `meshfed: store.path: store: open "`+filepath.Join(dir, "meshfed.db")+`": damaged: `+reason), "%s: %s", d.name, last)
		require.NotContains(t, stderr.String(), "panic", d.name)
		require.NotContains(t, stderr.String(), "goroutine", d.name)
	}
}

// A store that is an empty file: meshfed check and meshfed store check warn
// (exit status 2), and the agent starts with a new store, logging so.
func TestEmptyStoreFileIsANewStoreWithAWarning(t *testing.T) {
	dir := agentDir(t)
	path := filepath.Join(dir, "meshfed.db")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	code, out := checkCommand(t, "check", "--config", filepath.Join(dir, "meshfed.yaml"))
	require.Equal(t, 2, code)
	require.Contains(t, out, ": warning: store.path: "+path+" is an empty file (0 bytes): the agent starts with a new, empty store; if it held imports, restore it from a backup\n")
	code, out = checkCommand(t, "store", "check", "--config", filepath.Join(dir, "meshfed.yaml"))
	require.Equal(t, 2, code)
	require.Equal(t, path+": warning: an empty file (0 bytes): the agent starts with a new, empty store; if it held imports, restore it from a backup\n", out)

	cmd := exec.Command(buildMeshfed(t), "run", "--config", filepath.Join(dir, "meshfed.yaml"))
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	found := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(fmt.Sprint(line["msg"]), "new store") {
				found <- line
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case line := <-found:
		require.Equal(t, "warn", line["level"])
		require.Equal(t, path, line["path"])
		require.Equal(t, "an empty file (0 bytes)", line["found"])
	case <-time.After(60 * time.Second): // a hang guard, not a measure
		t.Fatal("no new store logged")
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
}

// meshfed store backup copies a stopped agent's store from its file, and a
// running agent's over its admin API; each copy is checked, and meshfed
// store check checks a running agent's store through such a copy.
func TestStoreBackupOfflineAndOnline(t *testing.T) {
	dir := agentDir(t)
	cfgPath := filepath.Join(dir, "meshfed.yaml")
	path := filepath.Join(dir, "meshfed.db")
	s, err := store.Open(path)
	require.NoError(t, err)
	require.NoError(t, s.Put("notes", "kept", []byte("across restarts")))
	require.NoError(t, s.Close())

	offline := filepath.Join(t.TempDir(), "offline.db")
	out, err := run(t, "store", "backup", "--config", cfgPath, offline)
	require.NoError(t, err)
	require.Regexp(t, "^wrote "+offline+" from "+path+": 0 peers, 0 imports, [0-9]+ bytes\n$", out)
	fi, err := os.Stat(offline)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	a, err := agent.New(context.Background(), cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	servetest.Start(t, a.Listening(), a.Run)
	url := "http://" + a.AdminAddr().String()

	online := filepath.Join(t.TempDir(), "online.db")
	out, err = run(t, "store", "backup", "--config", cfgPath, "--agent", url, online)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "wrote "+online+" from the running agent at "+url+": 0 peers, 0 imports, "), out)
	copied, err := store.Open(online)
	require.NoError(t, err)
	v, ok, err := copied.Get("notes", "kept")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "across restarts", string(v))
	require.NoError(t, copied.Close())

	out, err = run(t, "store", "check", "--config", cfgPath, "--agent", url)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, path+": ok (a copy from the running agent at "+url+"): 0 peers, 0 imports, "), out)

	// A backup that cannot be made leaves what was there.
	require.NoError(t, os.WriteFile(online, []byte("the last good backup"), 0o600))
	_, err = run(t, "store", "backup", "--config", cfgPath, "--agent", "http://127.0.0.1:1", online)
	require.ErrorContains(t, err, "cannot reach the meshfed agent at http://127.0.0.1:1")
	b, err := os.ReadFile(online)
	require.NoError(t, err)
	require.Equal(t, "the last good backup", string(b))
}
