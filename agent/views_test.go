package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/store"
	"github.com/meshfed/meshfed/model"
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
