package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The binary reloads its configuration on SIGHUP instead of dying, and
// meshfed reload does the same over the admin API and prints the fields.
func TestRunBinaryReloadsOnSIGHUP(t *testing.T) {
	bin := buildMeshfed(t)
	dir := agentDir(t)
	cfgPath := filepath.Join(dir, "meshfed.yaml")

	cmd := exec.Command(bin, "run", "--config", cfgPath)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	admin := make(chan string, 1)
	go func() {
		// The logs are read to their end, so that the agent never blocks
		// on a full pipe.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving the admin API" {
				admin <- "http://" + line.Address
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	var url string
	select {
	case url = <-admin:
	case err := <-exited:
		t.Fatalf("meshfed run exited: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("meshfed run never served its admin API")
	}

	more := "services:\n  - name: ledger\n    fqdn: ledger.mesh-a.example\n    consumers: [mesh-b]\n    ports: [{name: http, port: 8080, protocol: HTTP, endpoints: [{address: 10.0.0.2, port: 9080}]}]\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "more.yaml"), []byte(more), 0o600))
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	edited := strings.Replace(string(b), "exports: {file: services.yaml}", "exports: {file: more.yaml}", 1)
	edited = strings.Replace(edited, "federation: {listen: 127.0.0.1:0}", "federation: {listen: 127.0.0.1:0, retention: 1h}", 1)
	require.NoError(t, os.WriteFile(cfgPath, []byte(edited), 0o600))

	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		out, err := run(t, "catalog", "exports", "--agent", url)
		require.NoError(t, err)
		return strings.Contains(out, "ledger.mesh-a.example") && !strings.Contains(out, "inventory")
	}, 30*time.Second, 50*time.Millisecond)
	require.Contains(t, metrics(t, url), `meshfed_config_reloads_total{result="applied"} 1`)

	out, err := run(t, "reload", "--agent", url)
	require.NoError(t, err)
	require.Equal(t, "FIELD                 CHANGE\nfederation.retention  needs a restart\n", out)

	require.NoError(t, os.WriteFile(cfgPath, []byte(strings.Replace(edited, "retention: 1h", "retention: soon", 1)), 0o600))
	_, err = run(t, "reload", "--agent", url)
	require.ErrorContains(t, err, "answered POST /api/v1/reload with 422 Unprocessable Entity: configuration not reloaded; the running one stays: "+cfgPath+":9: error: federation.retention: ")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-exited)
	exited <- nil // for the cleanup
}

func metrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
