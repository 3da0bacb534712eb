package peer_test

import (
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/store"
)

// transactionSizes is the real store, recording how many imports each
// transaction held.
type transactionSizes struct {
	*store.Store
	mu    sync.Mutex
	sizes []int
}

func (s *transactionSizes) WriteImports(ws []store.ImportWrite) error {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(ws))
	s.mu.Unlock()
	return s.Store.WriteImports(ws)
}

func (s *transactionSizes) recorded() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

// TestMaxBatchOfOneStoresEachResponseAlone: a consumer whose Config.MaxBatch
// is 1 stores every response of a window of 64 in a transaction of its
// own, and still imports the whole catalog; the owner's catalog is sent
// with the window all the same.
func TestMaxBatchOfOneStoresEachResponseAlone(t *testing.T) {
	const n = 300
	p := newPKI(t, "mesh-a", "mesh-b")
	owner := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, func(c *peer.Config) { c.Window = 64 })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var sizes *transactionSizes
	consumer := &agent{t: t, name: "mesh-a", pki: p, dir: t.TempDir(), specs: []peer.Spec{spec("mesh-b", p.td("mesh-b"), owner.addr)},
		cfg: func(c *peer.Config) { c.Window, c.MaxBatch = 64, 1 }}
	consumer.addr = lis.Addr().String()
	consumer.wrapStore = func(st *store.Store) catalog.Store {
		sizes = &transactionSizes{Store: st}
		return sizes
	}
	consumer.start(lis)
	t.Cleanup(consumer.stop)

	names := serviceNames(n)
	owner.export(names, "mesh-a")
	consumer.eventuallyImportsAll("mesh-b", names)
	caps := consumer.status("mesh-b").Capabilities
	require.NotNil(t, caps)
	require.Equal(t, 64, caps.Window, "the window is not what bounds the batches here")
	got := sizes.recorded()
	require.GreaterOrEqual(t, len(got), n, "a transaction a response")
	for i, size := range got {
		require.Equal(t, 1, size, "transaction %d", i)
	}
	recs, err := consumer.store.PeerImports("mesh-b")
	require.NoError(t, err)
	require.Len(t, recs, n)
}
