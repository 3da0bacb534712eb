package peer_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMaxBatchOfOneStoresEachResponseAlone: a consumer whose Config.MaxBatch
// is 1 stores every response of a window of 64 in a transaction of its
// own, and still imports the whole catalog; the owner's catalog is sent
// with the window all the same.
func TestMaxBatchOfOneStoresEachResponseAlone(t *testing.T) {
	const n = 300
	owner, consumer, counted := newSyncPair(t, syncOptions{maxBatch: 1})
	names := serviceNames(n)
	owner.export(names, "mesh-a")
	consumer.eventuallyImportsAll("mesh-b", names)
	caps := consumer.status("mesh-b").Capabilities
	require.NotNil(t, caps)
	require.Equal(t, 64, caps.Window, "the window is not what bounds the batches here")
	got := counted.recorded()
	require.GreaterOrEqual(t, len(got), n, "a transaction a response")
	for i, size := range got {
		require.Equal(t, 1, size, "transaction %d", i)
	}
	recs, err := consumer.store.PeerImports("mesh-b")
	require.NoError(t, err)
	require.Len(t, recs, n)
}
