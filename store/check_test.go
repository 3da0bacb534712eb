package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const pageSize = 4096

// filled writes a store of 500 imports of 5 peers, ten of them over two
// pages long, and some port allocations, and returns its bytes and how far
// its pages reach.
func filled(t *testing.T) ([]byte, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meshfed.db")
	s, err := Open(path)
	require.NoError(t, err)
	var rs []Record
	for i := range 500 {
		size := 700
		if i%50 == 0 {
			size = 9000 // a value of overflow pages
		}
		rs = append(rs, Record{Peer: fmt.Sprintf("mesh-%d", i%5), ResourceID: fmt.Sprintf("svc-%03d", i), Service: bytes.Repeat([]byte{byte(i)}, size)})
	}
	require.NoError(t, s.PutImports(rs))
	require.NoError(t, s.Put("egress-ports", "mesh-1/svc-001", []byte{0x52, 0x08}))
	var reach int
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error { reach = int(tx.Size()); return nil }))
	require.NoError(t, s.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b, reach
}

// damaged are the ways a store file is found broken.
func damaged(b []byte, reach int) map[string][]byte {
	cut := bytes.Clone(b[:reach/2])
	flipped := bytes.Clone(b)
	for p := 2; p < reach/pageSize; p++ {
		flipped[p*pageSize+10] ^= 1 // one bit of each page's element count
	}
	zeroed := bytes.Clone(b)
	clear(zeroed[2*pageSize:]) // every page but the two meta pages
	return map[string][]byte{
		"cut in half":        cut,
		"bit-flipped":        flipped,
		"zeroed data pages":  zeroed,
		"not a store at all": bytes.Repeat([]byte("x"), 2*pageSize),
	}
}

const way = "; restore it from a backup (meshfed store backup makes one), or move it aside and start again with an empty store: " +
	"peers send their services again when they reconnect, but the egress ports of the imports may change"

// Each damaged file is found damaged by Check and refused by Open with the
// way out, and neither panics.
func TestDamagedStoreIsFoundAndNamed(t *testing.T) {
	b, reach := filled(t)
	want := map[string]string{
		"cut in half":        fmt.Sprintf("damaged: the file is %d bytes, but its pages reach %d: it was cut short", reach/2, reach),
		"bit-flipped":        "damaged: ",
		"zeroed data pages":  "damaged: reading a page failed: invalid freelist page: 0, page type is unknown<00>",
		"not a store at all": "damaged: invalid database",
	}
	for name, content := range damaged(b, reach) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "meshfed.db")
			require.NoError(t, os.WriteFile(path, content, 0o600))
			_, err := Check(path)
			require.ErrorIs(t, err, ErrDamaged)
			require.ErrorContains(t, err, `store: check "`+path+`": `+want[name])
			require.ErrorContains(t, err, way)
			s, err := Open(path)
			require.ErrorIs(t, err, ErrDamaged)
			require.Nil(t, s)
			require.ErrorContains(t, err, `store: open "`+path+`": `+want[name])
			after, rerr := os.ReadFile(path)
			require.NoError(t, rerr)
			require.Equal(t, content, after, "the damaged file is left as it was")
		})
	}
}

// A missing or empty file is a new store, and Open says so: an empty one
// as a warning, since a store that held imports never is.
func TestNewStoreIsLogged(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	for _, tc := range []struct {
		path, found string
		empty       bool
		level       zapcore.Level
	}{
		{filepath.Join(dir, "missing.db"), "no file", false, zapcore.InfoLevel},
		{empty, "an empty file (0 bytes)", true, zapcore.WarnLevel},
	} {
		sum, err := Check(tc.path)
		require.NoError(t, err)
		require.Equal(t, Summary{New: true, Empty: tc.empty}, sum)
		core, logs := observer.New(zapcore.DebugLevel)
		s, err := Open(tc.path, WithLog(zap.New(core)))
		require.NoError(t, err)
		require.NoError(t, s.Close())
		entries := logs.All()
		require.Len(t, entries, 1)
		require.Contains(t, entries[0].Message, "new store")
		require.Equal(t, tc.level, entries[0].Level)
		require.Equal(t, map[string]any{"path": tc.path, "found": tc.found}, entries[0].ContextMap())
	}
	// Then it is a store, checked at each open.
	sum, err := Check(empty)
	require.NoError(t, err)
	require.False(t, sum.New)
	core, logs := observer.New(zapcore.DebugLevel)
	s, err := Open(empty, WithLog(zap.New(core)))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.Equal(t, "store checked", logs.All()[0].Message)
}

func TestCheckSummarizes(t *testing.T) {
	b, _ := filled(t)
	path := filepath.Join(t.TempDir(), "meshfed.db")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	sum, err := Check(path)
	require.NoError(t, err)
	require.Equal(t, Summary{Bytes: int64(len(b)), Peers: 5, Imports: 500}, sum)
}

// Bits flipped at random in the data pages, 20 at a time, with fixed
// seeds: most land in values, which bbolt does not checksum, and read
// back; the others are found damaged. Nothing panics or faults, and what
// Check passes Open opens and reads back.
func TestRandomFlipsNeverPanic(t *testing.T) {
	b, reach := filled(t)
	found := 0
	for seed := range uint64(flipSeeds()) {
		r := rand.New(rand.NewPCG(seed, 0))
		c := bytes.Clone(b)
		for range 20 {
			i := 2*pageSize + r.IntN(reach-2*pageSize)
			c[i] ^= 1 << r.IntN(8)
		}
		path := filepath.Join(t.TempDir(), "meshfed.db")
		require.NoError(t, os.WriteFile(path, c, 0o600))
		if _, err := Check(path); err != nil {
			require.ErrorIs(t, err, ErrDamaged, "seed %d", seed)
			found++
			continue
		}
		s, err := Open(path)
		require.NoError(t, err, "seed %d", seed)
		_, err = s.Imports()
		require.NoError(t, err, "seed %d", seed)
		require.NoError(t, s.Close())
	}
	t.Logf("%d of %d damaged files found damaged", found, flipSeeds())
	require.NotZero(t, found)
}

// The layout version is checked as before: a newer store is refused.
func TestCheckRefusesAnotherLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshfed.db")
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, binary.BigEndian.AppendUint16(nil, 2)[1:])
	}))
	require.NoError(t, db.Close())
	_, err = Check(path)
	require.ErrorContains(t, err, "damaged: layout version [2], this binary reads only 1")
}

func flipSeeds() int {
	if n, err := strconv.Atoi(os.Getenv("FLIP_SEEDS")); err == nil {
		return n
	}
	return 100
}
