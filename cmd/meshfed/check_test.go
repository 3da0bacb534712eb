package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func checkCommand(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(args, &stdout, &stderr)
	require.Empty(t, stderr.String())
	return code, stdout.String()
}

func TestCheckExitStatus(t *testing.T) {
	dir := agentDir(t)
	path := filepath.Join(dir, "meshfed.yaml")
	code, out := checkCommand(t, "check", "--config", path)
	require.Equal(t, 0, code)
	require.Equal(t, path+": ok\n", out)

	// Warnings only: 2.
	b, err := os.ReadFile(filepath.Join(dir, "services.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "services.yaml"), bytes.Replace(b, []byte("[mesh-b]"), []byte("[mesh-b, mesh-c]"), 1), 0o600))
	code, out = checkCommand(t, "check", "--config", path)
	require.Equal(t, 2, code)
	require.Equal(t, path+`:13: warning: exports.file: `+dir+`/services.yaml: service inventory names consumer "mesh-c", which is not a configured peer (peers[].name): nothing is sent to it`+"\n"+path+": 1 warning\n", out)

	// Errors: 1, and config validate is the same check.
	cfg, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(cfg), "xds: {listen: 127.0.0.1:0}", "xds: {listen: 127.0.0.1:0, holdof: 5ms}", 1)), 0o600))
	for _, args := range [][]string{{"check", "--config", path}, {"config", "validate", path}} {
		code, out = checkCommand(t, args...)
		require.Equal(t, 1, code)
		require.Equal(t, path+":11: error: xds.holdof: unknown field; did you mean holdoff?\n"+path+": 1 error, 0 warnings\n", out)
	}
}

func TestConfigSchemaPrintsTheSchema(t *testing.T) {
	code, out := checkCommand(t, "config", "schema")
	require.Equal(t, 0, code)
	require.Contains(t, out, `"$schema": "https://json-schema.org/draft/2020-12/schema"`)
}
