package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func open(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "meshfed.db")
	s, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func rec(peer, id, svc string) Record {
	return Record{Peer: peer, ResourceID: id, Service: []byte(svc)}
}

func diff(t *testing.T, want, got []Record) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("records (-want +got):\n%s", d)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	_, path := open(t)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())
}

func TestImportsRoundTrip(t *testing.T) {
	s, _ := open(t)
	// Peer names and ids that would collide under any separator.
	in := []Record{
		rec("mesh-b", "payments", "p1"),
		rec("mesh-b", "a/b", "ab"),
		rec("mesh-b/a", "b", "mesh-b/a b"),
		rec("mesh-a", "payments.mesh-a.example", "pa"),
		{Peer: "mesh-a", ResourceID: "x\x00y", Service: []byte{0, 1, 2}, StaleSince: time.Unix(1700000000, 5)},
	}
	for _, r := range in {
		require.NoError(t, s.PutImport(r))
	}
	require.NoError(t, s.PutImport(rec("mesh-b", "payments", "p2"))) // replaces
	want := []Record{
		in[3], in[4],
		rec("mesh-b", "a/b", "ab"), rec("mesh-b", "payments", "p2"),
		in[2],
	}
	got, err := s.Imports()
	require.NoError(t, err)
	diff(t, want, got)

	got, err = s.PeerImports("mesh-b")
	require.NoError(t, err)
	diff(t, want[2:4], got)

	require.NoError(t, s.DeleteImport("mesh-b", "payments"))
	require.NoError(t, s.DeleteImport("mesh-b", "payments"), "deletes are idempotent")
	require.NoError(t, s.DeleteImport("nobody", "x"))
	got, err = s.PeerImports("mesh-b")
	require.NoError(t, err)
	diff(t, want[2:3], got)

	got, err = s.PeerImports("nobody")
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestPutImportsIsAtomic(t *testing.T) {
	s, _ := open(t)
	require.NoError(t, s.PutImports([]Record{rec("a", "1", "x"), rec("b", "2", "y")}))
	err := s.PutImports([]Record{rec("a", "3", "z"), rec("a", "", "z")})
	require.EqualError(t, err, `store: put import "" of peer "a": empty resource id`)
	got, err := s.Imports()
	require.NoError(t, err)
	diff(t, []Record{rec("a", "1", "x"), rec("b", "2", "y")}, got)
}

func TestReopenRestores(t *testing.T) {
	s, path := open(t)
	stale := time.Date(2026, 3, 1, 12, 0, 0, 123, time.UTC)
	require.NoError(t, s.PutImport(rec("mesh-b", "payments", "p")))
	require.NoError(t, s.PutImport(Record{Peer: "mesh-c", ResourceID: "orders", Service: []byte("o"), StaleSince: stale}))
	require.NoError(t, s.Put("ports", "mesh-b/payments", []byte{0x3a, 0x98}))
	require.NoError(t, s.Close())

	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Imports()
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.True(t, got[1].StaleSince.Equal(stale), "stale since %v, want %v", got[1].StaleSince, stale)
	got[1].StaleSince = stale
	diff(t, []Record{rec("mesh-b", "payments", "p"), {Peer: "mesh-c", ResourceID: "orders", Service: []byte("o"), StaleSince: stale}}, got)
	v, ok, err := s.Get("ports", "mesh-b/payments")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []byte{0x3a, 0x98}, v)
}

func TestSetStale(t *testing.T) {
	s, _ := open(t)
	require.NoError(t, s.PutImports([]Record{rec("b", "1", "x"), rec("b", "2", "y"), rec("c", "1", "z")}))
	since := time.Unix(1800000000, 0)
	require.NoError(t, s.SetStale("b", since))
	require.NoError(t, s.SetStale("nobody", since))
	got, err := s.Imports()
	require.NoError(t, err)
	for _, r := range got {
		require.Equal(t, r.Peer == "b", r.StaleSince.Equal(since), "%s/%s stale since %v", r.Peer, r.ResourceID, r.StaleSince)
	}
	require.Equal(t, []byte("y"), got[1].Service, "marking keeps the service")

	require.NoError(t, s.SetStale("b", time.Time{}))
	got, err = s.PeerImports("b")
	require.NoError(t, err)
	diff(t, []Record{rec("b", "1", "x"), rec("b", "2", "y")}, got)

	err = s.SetStale("b", time.Unix(0, 0))
	require.ErrorIs(t, err, ErrStaleTime)
	require.EqualError(t, err, `store: mark stale imports of peer "b": stale time outside 1678-2262, or exactly the Unix epoch`)
	require.ErrorIs(t, s.SetStale("b", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)), ErrStaleTime)
}

func TestDeletePeer(t *testing.T) {
	s, _ := open(t)
	require.NoError(t, s.PutImports([]Record{rec("b", "1", "x"), rec("b", "2", "y"), rec("c", "1", "z")}))
	require.NoError(t, s.DeletePeer("b"))
	require.NoError(t, s.DeletePeer("b"))
	got, err := s.Imports()
	require.NoError(t, err)
	diff(t, []Record{rec("c", "1", "z")}, got)
	require.EqualError(t, s.DeletePeer(""), `store: delete imports of peer "": empty peer name`)
}

func TestInvalidWritesChangeNothing(t *testing.T) {
	s, _ := open(t)
	before := []Record{rec("mesh-b", "payments", "p")}
	require.NoError(t, s.PutImports(before))
	long := string(make([]byte, 32769))
	for _, tc := range []struct {
		err  error
		call func() error
		want string
	}{
		{ErrEmptyID, func() error { return s.PutImport(rec("mesh-b", "", "p")) }, `store: put import "" of peer "mesh-b": empty resource id`},
		{ErrEmptyPeer, func() error { return s.PutImport(rec("", "payments", "p")) }, `store: put import "payments" of peer "": empty peer name`},
		{ErrEmptyService, func() error { return s.PutImport(rec("mesh-b", "payments", "")) }, `store: put import "payments" of peer "mesh-b": empty service`},
		{ErrKeyTooLong, func() error { return s.PutImport(rec("mesh-b", long, "p")) }, "longer than the 32768 bytes a key may have"},
		{ErrStaleTime, func() error {
			return s.PutImport(Record{Peer: "mesh-b", ResourceID: "payments", Service: []byte("q"), StaleSince: time.Unix(0, 0)})
		}, `store: put import "payments" of peer "mesh-b": stale time`},
		{ErrEmptyID, func() error { return s.DeleteImport("mesh-b", "") }, `store: delete import "" of peer "mesh-b": empty resource id`},
		{ErrEmptyPeer, func() error { return s.SetStale("", time.Now()) }, `store: mark stale imports of peer "": empty peer name`},
	} {
		err := tc.call()
		require.ErrorIs(t, err, tc.err)
		require.ErrorContains(t, err, tc.want)
	}
	got, err := s.Imports()
	require.NoError(t, err)
	diff(t, before, got)
}

func TestSecondOpenTimesOut(t *testing.T) {
	_, path := open(t)
	_, err := Open(path, WithTimeout(100*time.Millisecond))
	require.ErrorIs(t, err, ErrLocked)
	require.EqualError(t, err, fmt.Sprintf("store: open %q: locked by another process (gave up after 100ms; is another meshfed running on it?)", path))
}

func TestCorruptRecordIsNamed(t *testing.T) {
	s, _ := open(t)
	require.NoError(t, s.PutImport(rec("mesh-b", "payments", "p")))
	require.NoError(t, s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImports).Bucket([]byte("mesh-b")).Put([]byte("payments"), []byte{9, 8, 0})
	}))
	_, err := s.Imports()
	require.ErrorIs(t, err, ErrCorrupt)
	require.EqualError(t, err, `store: read imports: import "payments" of peer "mesh-b": corrupt record: envelope version 9, this binary reads only 1`)
}

func TestRecordEnvelopeSkipsNewerHeader(t *testing.T) {
	// A newer writer appended four header bytes; this reader skips them.
	v := []byte{1, 12, 0, 0, 0, 0, 0, 0, 0, 7, 0xee, 0xee, 0xee, 0xee, 's', 'v', 'c'}
	stale, svc, err := decodeRecord(v)
	require.NoError(t, err)
	require.Equal(t, int64(7), stale)
	require.Equal(t, []byte("svc"), svc)
	for _, bad := range [][]byte{nil, {1}, {1, 4, 0, 0, 0, 0}, {1, 8, 0}} {
		_, _, err := decodeRecord(bad)
		require.ErrorIs(t, err, ErrCorrupt, "%v", bad)
	}
}

func TestKV(t *testing.T) {
	s, path := open(t)
	_, ok, err := s.Get("ports", "x")
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, s.Put("ports", "b", []byte("2")))
	require.NoError(t, s.Put("ports", "a", []byte("1")))
	require.NoError(t, s.Put("ports", "empty", nil))
	v, ok, err := s.Get("ports", "empty")
	require.NoError(t, err)
	require.True(t, ok, "an empty value is a value")
	require.Empty(t, v)

	var seen []string
	require.NoError(t, s.ForEach("ports", func(k string, v []byte) error {
		seen = append(seen, k+"="+string(v))
		// fn may write: it runs outside the read transaction.
		return s.Put("seen", k, v)
	}))
	require.Equal(t, []string{"a=1", "b=2", "empty="}, seen)

	require.NoError(t, s.Delete("ports", "a"))
	require.NoError(t, s.Delete("ports", "a"))
	require.NoError(t, s.Delete("nothing", "a"))
	_, ok, err = s.Get("ports", "a")
	require.NoError(t, err)
	require.False(t, ok)

	stop := fmt.Errorf("stop")
	require.Equal(t, stop, s.ForEach("seen", func(string, []byte) error { return stop }))
	require.NoError(t, s.DeleteBucket("seen"))
	require.NoError(t, s.ForEach("seen", func(string, []byte) error { return stop }))

	require.EqualError(t, s.Put("", "k", nil), `store: put "k" in bucket "": empty bucket name`)
	require.EqualError(t, s.Put("ports", "", nil), `store: put "" in bucket "ports": empty key`)

	// The kv space and the imports do not see each other.
	require.NoError(t, s.PutImport(rec("ports", "b", "svc")))
	v, ok, err = s.Get("ports", "b")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []byte("2"), v)

	require.NoError(t, s.Close())
	s, err = Open(path)
	require.NoError(t, err)
	defer s.Close()
	v, ok, err = s.Get("ports", "b")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []byte("2"), v)
}

func TestKVApply(t *testing.T) {
	s, _ := open(t)
	require.NoError(t, s.Put("ports", "old", []byte("1")))
	require.NoError(t, s.Apply("ports", map[string][]byte{"a": []byte("2"), "b": nil}, []string{"old", "missing"}))
	var seen []string
	require.NoError(t, s.ForEach("ports", func(k string, v []byte) error {
		seen = append(seen, k+"="+string(v))
		return nil
	}))
	require.Equal(t, []string{"a=2", "b="}, seen)

	// A bad key rejects the whole batch.
	require.EqualError(t, s.Apply("ports", map[string][]byte{"c": []byte("3"), "": nil}, nil),
		`store: put "" in bucket "ports": empty key`)
	_, ok, err := s.Get("ports", "c")
	require.NoError(t, err)
	require.False(t, ok)
}

func TestWriteImportsAppliesInOrderInOneTransaction(t *testing.T) {
	s, _ := open(t)
	require.NoError(t, s.PutImport(rec("mesh-b", "gone", "g")))
	require.NoError(t, s.PutImport(rec("mesh-c", "last", "l")))
	require.NoError(t, s.WriteImports([]ImportWrite{
		{Record: rec("mesh-b", "payments", "p1")},
		{Record: rec("mesh-b", "payments", "p2")}, // the later put wins
		{Record: rec("mesh-b", "orders", "o1")},
		{Record: Record{Peer: "mesh-b", ResourceID: "orders"}, Delete: true}, // then a delete
		{Record: rec("mesh-b", "carts", "c1")},
		{Record: Record{Peer: "mesh-b", ResourceID: "carts"}, Delete: true},
		{Record: rec("mesh-b", "carts", "c2")}, // and a put after the delete
		{Record: Record{Peer: "mesh-b", ResourceID: "gone"}, Delete: true},
		{Record: Record{Peer: "mesh-c", ResourceID: "last"}, Delete: true},    // empties mesh-c
		{Record: Record{Peer: "mesh-d", ResourceID: "never"}, Delete: true},   // not there: no error
		{Record: Record{Peer: "mesh-b", ResourceID: "missing"}, Delete: true}, // not there: no error
	}))
	got, err := s.Imports()
	require.NoError(t, err)
	diff(t, []Record{rec("mesh-b", "carts", "c2"), rec("mesh-b", "payments", "p2")}, got)
	// The emptied peer left no bucket behind.
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		require.Nil(t, tx.Bucket(bucketImports).Bucket([]byte("mesh-c")))
		return nil
	}))
}

func TestWriteImportsInvalidChangesNothing(t *testing.T) {
	s, _ := open(t)
	require.NoError(t, s.PutImport(rec("mesh-b", "payments", "p1")))
	err := s.WriteImports([]ImportWrite{
		{Record: rec("mesh-b", "payments", "p2")},
		{Record: Record{Peer: "mesh-b", ResourceID: "payments"}, Delete: true},
		{Record: rec("mesh-b", "orders", "")},
	})
	require.ErrorIs(t, err, ErrEmptyService)
	require.ErrorContains(t, err, `store: put import "orders" of peer "mesh-b": empty service`)
	err = s.WriteImports([]ImportWrite{
		{Record: rec("mesh-b", "payments", "p2")},
		{Record: Record{Peer: "mesh-b"}, Delete: true},
	})
	require.ErrorContains(t, err, `store: delete import "" of peer "mesh-b": empty resource id`)
	got, err := s.Imports()
	require.NoError(t, err)
	diff(t, []Record{rec("mesh-b", "payments", "p1")}, got)
	require.NoError(t, s.WriteImports(nil))
}
