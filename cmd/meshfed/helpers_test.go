package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// buildMeshfed builds the binary, for the tests of what only a process
// shows: its exit status, its stderr, its signals.
func buildMeshfed(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshfed")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}
