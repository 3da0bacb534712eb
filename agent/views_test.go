package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/store"
)

// withExports is an agent that only has a catalog of n exports, each
// delivered to two consumers, the second of which NACKed it.
func withExports(tb testing.TB, n int) *Agent {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "meshfed.db"))
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, st.Close()) })
	a := &Agent{Catalog: catalog.New(st, zap.NewNop())}
	exports := make([]model.Export, n)
	for i := range exports {
		e := inventory()
		e.Name, e.FQDN = fmt.Sprintf("svc-%05d", i), fmt.Sprintf("svc-%05d.mesh-a.example", i)
		e.Consumers = []string{"mesh-b", "mesh-c"}
		exports[i] = e
	}
	a.Catalog.SetExports(exports)
	at := time.Unix(1700000000, 0)
	for _, e := range exports {
		a.Catalog.Delivered("mesh-b", e.Name, codes.OK, "", at)
		a.Catalog.Delivered("mesh-c", e.Name, codes.InvalidArgument, "endpoints: loopback", at)
	}
	return a
}

func TestExportsViewHasEveryConsumersAnswer(t *testing.T) {
	v, err := withExports(t, 3).Exports(context.Background())
	require.NoError(t, err)
	views := v.([]ExportView)
	require.Len(t, views, 3)
	require.Equal(t, "svc-00001", views[1].Name)
	require.Equal(t, map[string]Delivery{
		"mesh-b": {Service: "svc-00001", Acked: true, At: time.Unix(1700000000, 0)},
		"mesh-c": {Service: "svc-00001", Code: "InvalidArgument", Message: "endpoints: loopback", At: time.Unix(1700000000, 0)},
	}, views[1].Deliveries)
}

// BenchmarkExportsView measures /api/v1/exports's work at 10,000 exports:
// go test ./agent -run XXX -bench ExportsView -benchtime 5x
func BenchmarkExportsView(b *testing.B) {
	a := withExports(b, 10000)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := a.Exports(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExportsAPI measures the whole answer of GET /api/v1/exports
// over HTTP, JSON included, at 1,000 and 10,000 exports: the cost grows
// with the exports, linearly.
// go test ./agent -run XXX -bench ExportsAPI -benchtime 5x
func BenchmarkExportsAPI(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a := withExports(b, n)
			srv, err := admin.New(admin.Options{Listen: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Ready: func() error { return nil }, Exports: a.Exports})
			require.NoError(b, err)
			c := &admin.Client{BaseURL: "http://" + servetest.Serve(b, srv.Serve)}
			b.ResetTimer()
			for b.Loop() {
				var v []json.RawMessage
				if err := c.Get(context.Background(), "/api/v1/exports", &v); err != nil {
					b.Fatal(err)
				}
				if len(v) != n {
					b.Fatalf("%d exports, want %d", len(v), n)
				}
			}
		})
	}
}
