package registry_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
	"github.com/meshfed/meshfed/registry/file"
)

const svc = `services:
  - name: NAME
    fqdn: NAME.mesh-a.example
    consumers: [mesh-b]
    ports:
      - {name: tcp, port: 5432, protocol: TCP, endpoints: [{address: 10.0.0.1, port: 5432}]}
`

func services(names ...string) string {
	out := "services:\n"
	for _, n := range names {
		out += strings.ReplaceAll(strings.TrimPrefix(svc, "services:\n"), "NAME", n)
	}
	return out
}

func names(set []model.Export) []string {
	var out []string
	for _, e := range set {
		out = append(out, e.Name)
	}
	return out
}

// writeFile replaces path atomically, as a careful writer does.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", []byte(content), 0o644))
	require.NoError(t, os.Rename(path+".tmp", path))
}

func TestMerge(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, a, services("zeta", "alpha"))
	writeFile(t, b, services("mid"))
	log := zaptest.NewLogger(t)
	m := registry.Merge(log, map[string]registry.Source{"a": file.New(a, 0, log), "b": file.New(b, 0, log)})

	updates := make(chan []model.Export, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, func(s []model.Export) { updates <- s }) }()
	next := func() []string {
		t.Helper()
		select {
		case s := <-updates:
			return names(s)
		case <-time.After(20 * time.Second):
			t.Fatal("no update")
			return nil
		}
	}
	require.Equal(t, []string{"alpha", "mid", "zeta"}, next())

	writeFile(t, b, services("mid", "beta"))
	require.Equal(t, []string{"alpha", "beta", "mid", "zeta"}, next())

	// A conflict while running keeps the last union and says why.
	writeFile(t, b, services("alpha"))
	require.Eventually(t, func() bool { return m.Status().Err != nil }, 20*time.Second, 5*time.Millisecond)
	require.EqualError(t, m.Status().Err, `service "alpha" comes from both source a and source b`)
	require.Empty(t, updates)

	writeFile(t, b, services())
	require.Equal(t, []string{"alpha", "zeta"}, next())
	require.NoError(t, m.Status().Err)

	cancel()
	require.NoError(t, <-done)
}

func TestMergeFirstStateErrors(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, a, services("alpha"))
	writeFile(t, b, strings.ReplaceAll(services("beta"), "beta.mesh-a", "alpha.mesh-a"))
	log := zaptest.NewLogger(t)
	never := func([]model.Export) { t.Fatal("update") }

	err := registry.Merge(log, map[string]registry.Source{"a": file.New(a, 0, log), "b": file.New(b, 0, log)}).Run(context.Background(), never)
	require.EqualError(t, err, `fqdn "alpha.mesh-a.example" comes from both source a and source b`)

	err = registry.Merge(log, map[string]registry.Source{"a": file.New(a, 0, log), "c": file.New(filepath.Join(dir, "c.yaml"), 0, log)}).Run(context.Background(), never)
	require.ErrorContains(t, err, "source c: registry file: open "+filepath.Join(dir, "c.yaml"))
}
