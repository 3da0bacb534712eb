// Package envoytest starts real Envoy gateways in tests. Without an envoy
// binary a test is skipped, loudly; with MESHFED_REQUIRE_ENVOY=1 (CI) it
// fails instead.
package envoytest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/meshfed/meshfed/envoyrun"
)

// EnvRequire=1 turns a missing binary from a skip into a failure.
const EnvRequire = "MESHFED_REQUIRE_ENVOY"

// Binary returns the envoy binary, or skips or fails t.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := envoyrun.Binary()
	if err == nil {
		return p
	}
	msg := "NO ENVOY BINARY: this test runs real Envoy gateways. " + err.Error()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg + " (" + EnvRequire + "=1)")
	}
	t.Skip(msg)
	return ""
}

// Start starts Envoy for the rest of the test; the process is stopped when
// the test ends, and its log is printed if the test failed.
func Start(t testing.TB, cfg envoyrun.Config) *envoyrun.Envoy {
	t.Helper()
	if cfg.Binary == "" {
		cfg.Binary = Binary(t)
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := envoyrun.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("stopping envoy %s: %v", e.Name(), err)
		}
		if t.Failed() {
			t.Logf("envoy %s log (last 40 lines):\n%s", e.Name(), e.LogTail(40))
		}
	})
	return e
}
