package catalog_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/store"
)

// failingStore is the real store, counting the import transactions and
// failing them while fail is set.
type failingStore struct {
	*store.Store
	writes int
	fail   bool
}

func (s *failingStore) WriteImports(ws []store.ImportWrite) error {
	s.writes++
	if s.fail {
		return errors.New("disk full")
	}
	return s.Store.WriteImports(ws)
}

func newApplyCatalog(t *testing.T, maxServices int) (*catalog.Catalog, *failingStore) {
	st, err := store.Open(filepath.Join(t.TempDir(), "meshfed.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	fs := &failingStore{Store: st}
	c := catalog.New(fs, zaptest.NewLogger(t))
	require.NoError(t, c.SetPeers([]catalog.Peer{
		{Peer: model.Peer{Name: "mesh-b", TrustDomain: "mesh-b.example"}, MaxServices: maxServices},
		{Peer: model.Peer{Name: "mesh-c", TrustDomain: "mesh-c.example"}},
	}))
	return c, fs
}

func upsert(id, fqdn string) catalog.ImportChange {
	return catalog.ImportChange{ID: id, Service: model.Service{Name: id, FQDN: fqdn}, Raw: []byte(fqdn)}
}

func del(id string) catalog.ImportChange { return catalog.ImportChange{ID: id, Delete: true} }

// state is what the catalog and the store hold: resource id → local fqdn,
// and resource id → stored bytes.
func state(t *testing.T, c *catalog.Catalog, st *failingStore) (mem, disk map[string]string) {
	t.Helper()
	mem, disk = map[string]string{}, map[string]string{}
	for _, imp := range c.Imports() {
		mem[imp.Peer+"/"+imp.ResourceID] = imp.LocalFQDN
	}
	recs, err := st.Imports()
	require.NoError(t, err)
	for _, r := range recs {
		disk[r.Peer+"/"+r.ResourceID] = string(r.Service)
	}
	return mem, disk
}

func codesOf(errs []error) []codes.Code {
	out := make([]codes.Code, len(errs))
	for i, err := range errs {
		out[i] = status.Code(err)
	}
	return out
}

// TestApplyChecksEachChangeAfterThoseBefore: one transaction for the run,
// and each change is checked against what the earlier ones of the same run
// left, as one by one.
func TestApplyChecksEachChangeAfterThoseBefore(t *testing.T) {
	c, st := newApplyCatalog(t, 3)
	require.NoError(t, c.Upsert("mesh-c", "search", model.Service{FQDN: "search.example"}, []byte("search.example")))
	st.writes = 0
	sub := c.Subscribe()
	defer sub.Close()

	errs := c.Apply("mesh-b", []catalog.ImportChange{
		upsert("a", "a.example"),
		upsert("b", "search.example"), // taken by mesh-c
		upsert("b", "b.example"),
		upsert("c", "c.example"),
		upsert("d", "d.example"), // a fourth: over the maximum of 3
		del("c"),
		upsert("d", "d.example"),  // room again
		upsert("a", "a2.example"), // lets go of a.example
		del("b"),
		upsert("e", "a.example"),
		upsert("d", "a2.example"), // a's now
		del("never"),
	})
	require.Equal(t, []codes.Code{codes.OK, codes.AlreadyExists, codes.OK, codes.OK, codes.ResourceExhausted, codes.OK, codes.OK,
		codes.OK, codes.OK, codes.OK, codes.AlreadyExists, codes.OK}, codesOf(errs))
	require.ErrorContains(t, errs[1], `fqdn: "search.example" is already imported from peer "mesh-c" as "search"`)
	require.ErrorContains(t, errs[4], `peer "mesh-b" is at its maximum of 3 services; "d" not imported`)
	require.ErrorContains(t, errs[10], `fqdn: "a2.example" is already imported from peer "mesh-b" as "a"`)
	require.Equal(t, 1, st.writes, "one transaction for the run")
	want := map[string]string{"mesh-b/a": "a2.example", "mesh-b/d": "d.example", "mesh-b/e": "a.example", "mesh-c/search": "search.example"}
	mem, disk := state(t, c, st)
	require.Equal(t, want, mem)
	require.Equal(t, want, disk)
	require.Equal(t, []model.Key{
		{Kind: model.KindImport, Peer: "mesh-b", ID: "a"},
		{Kind: model.KindImport, Peer: "mesh-b", ID: "b"},
		{Kind: model.KindImport, Peer: "mesh-b", ID: "c"},
		{Kind: model.KindImport, Peer: "mesh-b", ID: "d"},
		{Kind: model.KindImport, Peer: "mesh-b", ID: "e"},
	}, sub.Drain())
}

// TestApplyFailedWriteChangesNothing: a failed transaction refuses every
// change of the run with Unavailable and leaves memory and store as they
// were, fqdn owners included.
func TestApplyFailedWriteChangesNothing(t *testing.T) {
	c, st := newApplyCatalog(t, 0)
	require.Empty(t, c.Apply("mesh-b", []catalog.ImportChange{upsert("a", "a.example"), upsert("b", "b.example")})[0])
	memBefore, diskBefore := state(t, c, st)
	sub := c.Subscribe()
	defer sub.Close()

	st.fail = true
	errs := c.Apply("mesh-b", []catalog.ImportChange{
		upsert("a", "a2.example"), // moves a's fqdn
		del("b"),
		upsert("c", "b.example"), // takes b's
		upsert("c", "c.example"),
		del("never"),
		upsert("x", "a2.example"), // refused on its own too (a holds it by now), and Unavailable like the rest: the state it was checked against is gone
	})
	require.Equal(t, []codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.Unavailable}, codesOf(errs))
	require.ErrorContains(t, errs[0], `store: "a" not imported, try again`)
	require.ErrorContains(t, errs[1], `store: "b" not deleted, try again`)
	mem, disk := state(t, c, st)
	require.Equal(t, memBefore, mem)
	require.Equal(t, diskBefore, disk)
	require.Empty(t, sub.Drain())

	// The fqdn owners were put back too: the same run goes through now.
	st.fail = false
	errs = c.Apply("mesh-b", []catalog.ImportChange{upsert("a", "a2.example"), del("b"), upsert("c", "b.example")})
	require.Equal(t, []codes.Code{codes.OK, codes.OK, codes.OK}, codesOf(errs))
	errs = c.Apply("mesh-b", []catalog.ImportChange{upsert("y", "a.example")})
	require.Equal(t, []codes.Code{codes.OK}, codesOf(errs), "a.example was let go of")
}
