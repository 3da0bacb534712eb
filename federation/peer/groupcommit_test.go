package peer_test

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/store"
)

// countingStore is the real store, counting the import transactions and
// recording how many imports each held; they fail without writing while
// fail is set.
type countingStore struct {
	*store.Store
	writes atomic.Int64
	fail   atomic.Bool
	mu     sync.Mutex
	sizes  []int
}

func (s *countingStore) WriteImports(ws []store.ImportWrite) error {
	s.writes.Add(1)
	s.mu.Lock()
	s.sizes = append(s.sizes, len(ws))
	s.mu.Unlock()
	if s.fail.Load() {
		return errors.New("disk full")
	}
	return s.Store.WriteImports(ws)
}

// recorded is the number of imports of each transaction so far.
func (s *countingStore) recorded() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

func serviceNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%05d", i)
	}
	return names
}

// syncOptions is what the consumer of a sync pair does otherwise.
type syncOptions struct {
	// maxBatch is the consumer's Config.MaxBatch; its default when zero.
	maxBatch int
	// failing starts the consumer with its store failing.
	failing bool
}

// newSyncPair is an owner (mesh-b) exporting nothing yet and a consumer
// (mesh-a) that dials it, both with a window of 64, the consumer's store
// counted.
func newSyncPair(t *testing.T, opts syncOptions) (owner, consumer *agent, counted *countingStore) {
	p := newPKI(t, "mesh-a", "mesh-b")
	owner = newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, func(c *peer.Config) { c.Window = 64 })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	consumer = &agent{t: t, name: "mesh-a", pki: p, dir: t.TempDir(), specs: []peer.Spec{spec("mesh-b", p.td("mesh-b"), owner.addr)},
		cfg: func(c *peer.Config) {
			c.Window = 64
			if opts.maxBatch > 0 {
				c.MaxBatch, c.ServicesPerResponse = opts.maxBatch, opts.maxBatch
			}
		}}
	consumer.addr = lis.Addr().String()
	consumer.wrapStore = func(st *store.Store) catalog.Store {
		counted = &countingStore{Store: st}
		counted.fail.Store(opts.failing)
		return counted
	}
	consumer.start(lis)
	t.Cleanup(consumer.stop)
	return owner, consumer, counted
}

// TestSyncStoresAWindowInFewTransactions: over real mutual TLS, a catalog
// sent with a window of 64 is stored in fewer transactions than services.
func TestSyncStoresAWindowInFewTransactions(t *testing.T) {
	const n = 1000
	owner, consumer, counted := newSyncPair(t, syncOptions{})
	names := serviceNames(n)
	owner.export(names, "mesh-a")
	consumer.eventuallyImportsAll("mesh-b", names)
	writes := counted.writes.Load()
	t.Logf("%d services in %d transactions", n, writes)
	require.Less(t, writes, int64(n))
	recs, err := consumer.store.PeerImports("mesh-b")
	require.NoError(t, err)
	require.Len(t, recs, n)
}

// TestCrashKeepsEveryAckedImport: the consumer stops as a crash would in
// the middle of a sync; every service the owner saw ACKed is in the
// consumer's store file, and in its catalog once it is back.
func TestCrashKeepsEveryAckedImport(t *testing.T) {
	const n = 3000
	owner, consumer, _ := newSyncPair(t, syncOptions{})
	names := serviceNames(n)
	owner.export(names, "mesh-a")
	acked := func() []string {
		var out []string
		for name, d := range owner.catalog.Deliveries("mesh-a") {
			if d.Acked {
				out = append(out, name)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(acked()) >= n/10 }, time.Minute, time.Millisecond)
	consumer.stop()
	ackedAtCrash := acked()
	t.Logf("%d of %d services ACKed at the crash", len(ackedAtCrash), n)

	st, err := store.Open(filepath.Join(consumer.dir, "meshfed.db"))
	require.NoError(t, err)
	recs, err := st.PeerImports("mesh-b")
	require.NoError(t, err)
	require.NoError(t, st.Close())
	stored := map[string]bool{}
	for _, r := range recs {
		stored[r.ResourceID] = true
	}
	for _, name := range ackedAtCrash {
		require.True(t, stored[name], "%s was ACKed but is not in the store", name)
	}

	consumer.restart()
	restored := map[string]bool{}
	for _, id := range consumer.importedIDs("mesh-b") {
		restored[id] = true
	}
	for _, name := range ackedAtCrash {
		require.True(t, restored[name], "%s was ACKed but is not restored", name)
	}
	consumer.eventuallyImportsAll("mesh-b", names)
}

// TestFailedWritesAreNeverACKed: over mutual TLS, while the consumer's
// store fails, the owner gets no ACK for any service, only Unavailable,
// and nothing is stored; once the store works again, the owner's retries
// bring every service in.
func TestFailedWritesAreNeverACKed(t *testing.T) {
	const n = 200
	owner, consumer, counted := newSyncPair(t, syncOptions{failing: true})
	names := serviceNames(n)
	owner.export(names, "mesh-a")

	// Every service answered, each with Unavailable, while the store
	// fails.
	require.Eventually(t, func() bool { return len(owner.catalog.Deliveries("mesh-a")) == n }, time.Minute, time.Millisecond)
	for name, d := range owner.catalog.Deliveries("mesh-a") {
		require.False(t, d.Acked, name)
		require.Equal(t, codes.Unavailable, d.Code, name)
		require.Equal(t, fmt.Sprintf("store: %q not imported, try again", name), d.Message)
	}
	recs, err := counted.PeerImports("mesh-b")
	require.NoError(t, err)
	require.Empty(t, recs)
	require.Zero(t, consumer.catalog.ImportCount("mesh-b"))

	counted.fail.Store(false)
	consumer.eventuallyImportsAll("mesh-b", names)
	recs, err = consumer.store.PeerImports("mesh-b")
	require.NoError(t, err)
	require.Len(t, recs, n)
}
