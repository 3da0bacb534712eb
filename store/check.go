package store

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/meshfed/meshfed/internal/untrusted"
)

// ErrDamaged is a store file that is not a whole, consistent bbolt file:
// cut short, bit-flipped, zeroed, or not a store at all.
var ErrDamaged = errors.New("damaged")

// WayOut is what to do about a damaged store, said with every ErrDamaged.
const WayOut = "restore it from a backup (meshfed store backup makes one), or move it aside and start again " +
	"with an empty store: peers send their services again when they reconnect, but the egress ports of the imports may change"

// DamagedError is a store file found damaged, and why; it wraps
// ErrDamaged, and says the way out.
type DamagedError struct {
	Op, Path, Reason string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("store: %s %q: damaged: %s; %s", e.Op, e.Path, e.Reason, WayOut)
}

func (e *DamagedError) Unwrap() error { return ErrDamaged }

// Summary is what a check found in a store that passed.
type Summary struct {
	// New is a store that does not exist yet, or is an empty file
	// (Empty): the agent starts it empty. An empty file is worth a
	// warning, as a store that held imports never is.
	New, Empty bool
	// Bytes is the file's size; Peers and Imports what it holds.
	Bytes          int64
	Peers, Imports int
}

// Check checks the store at path without changing it, as Open does before
// it opens: every page the file's meta pages reach lies within the file,
// every bucket, key and import record reads back, and bbolt's own
// consistency check (free list, page reachability, key order) passes. A
// panic inside bbolt, and a fault reading a page that is not there, become
// an error wrapping ErrDamaged that says the way out. A file held by
// another process is an error wrapping ErrLocked; a missing or empty file
// is a new store.
func Check(path string, opts ...Option) (Summary, error) {
	return checkAs("check", path, opts)
}

// Found says what a new store was found as: no file, or an empty one.
func (s Summary) Found() string {
	if s.Empty {
		return "an empty file (0 bytes)"
	}
	return "no file"
}

// checkAs is Check, its errors naming op.
func checkAs(op, path string, opts []Option) (Summary, error) {
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Summary{New: true}, nil
	case err != nil:
		return Summary{}, fmt.Errorf("store: %s %q: %w", op, path, err)
	case !fi.Mode().IsRegular():
		return Summary{}, &DamagedError{Op: op, Path: path, Reason: "not a regular file"}
	case fi.Size() == 0:
		return Summary{New: true, Empty: true}, nil
	}
	sum, err := check(path, fi.Size(), o.timeout)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return Summary{}, fmt.Errorf("store: %s %q: %w (gave up after %s; is another meshfed running on it?)", op, path, ErrLocked, o.timeout)
	}
	if err != nil {
		return Summary{}, &DamagedError{Op: op, Path: path, Reason: err.Error()}
	}
	return sum, nil
}

// check opens the file read-only and reads all of it on this goroutine,
// where a panic, and a fault on a page that a damaged pointer leads
// outside the file to, are recovered: bbolt reads its pages from a memory
// map, so a bad page id faults rather than failing.
//
// It opens the file twice. First only its meta pages are read (they carry
// a checksum), to see that the pages they reach are all in the file: a
// file cut short is said to be so. Then the free list is read by Open
// (PreLoadFreelist) on this goroutine, not later by tx.Check's own, where
// a fault would end the process; and every page is read before tx.Check
// runs. After a panic the transaction and the database are ended if they
// were made; one inside Open leaves the file mapped, and so locked, until
// the process ends, as Open returns nothing to unmap: the process is about
// to report the damage and stop.
func check(path string, size int64, timeout time.Duration) (sum Summary, err error) {
	var (
		file *os.File
		db   *bolt.DB
		tx   *bolt.Tx
	)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		sum, err = Summary{}, fmt.Errorf("reading a page failed: %v", r)
		switch {
		case db != nil:
			// Neither touches a page; the recover is there all the same,
			// as a second panic would end the process.
			func() {
				defer func() { _ = recover() }()
				if tx != nil {
					_ = tx.Rollback()
				}
				_ = db.Close()
			}()
		case file != nil:
			_ = file.Close()
		}
	}()
	open := func(preload bool) (err error) {
		db, tx = nil, nil
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			ReadOnly: true, Timeout: timeout, PreLoadFreelist: preload,
			OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, perm)
				file = f
				return f, err
			},
		})
		if err != nil {
			db = nil
			return err
		}
		if tx, err = db.Begin(false); err != nil {
			_ = db.Close()
			return err
		}
		return nil
	}
	end := func() error {
		_ = tx.Rollback()
		return db.Close()
	}
	if err := open(false); err != nil {
		return Summary{}, err
	}
	need := tx.Size()
	if err := end(); err != nil {
		return Summary{}, err
	}
	if need > size {
		return Summary{}, fmt.Errorf("the file is %d bytes, but its pages reach %d: it was cut short", size, need)
	}
	if err := open(true); err != nil {
		return Summary{}, err
	}
	sum = Summary{Bytes: size}
	err = inspect(tx, file, &sum)
	if cerr := end(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Summary{}, err
	}
	return sum, nil
}

// inspect checks the page trees from f, reads every page tx reaches, then
// runs bbolt's consistency check, whose first problems it returns.
func inspect(tx *bolt.Tx, f io.ReaderAt, sum *Summary) error {
	p := newPages(tx, f)
	if err := readAll(tx, p, sum); err != nil {
		return err
	}
	if err := p.freelist(tx); err != nil {
		return err
	}
	var problems []string
	n := 0
	for e := range tx.Check() {
		if n++; n <= 3 {
			problems = append(problems, e.Error())
		}
	}
	if n > 3 {
		problems = append(problems, fmt.Sprintf("%d more", n-3))
	}
	if len(problems) > 0 {
		return fmt.Errorf("bbolt's consistency check: %s", strings.Join(problems, "; "))
	}
	return nil
}

// readAll reads every key and value, and decodes every import record, so
// that each page the file reaches is read here first, where a fault is
// recovered, rather than by tx.Check's own goroutine, where it would not
// be. The pages of each bucket are checked by p before its keys are read.
func readAll(tx *bolt.Tx, p *pages, sum *Summary) error {
	h := crc32.NewIEEE()
	touch := func(k, v []byte) {
		_, _ = h.Write(k)
		_, _ = h.Write(v)
	}
	pagesOf := func(b *bolt.Bucket) error {
		if r := uint64(b.Root()); r != 0 { // 0: inline, in its parent's page
			return p.tree(r)
		}
		return nil
	}
	if err := pagesOf(tx.Cursor().Bucket()); err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return errors.New("no meta bucket: not a meshfed store")
	}
	if err := pagesOf(meta); err != nil {
		return err
	}
	if v := meta.Get(keySchema); len(v) != 1 || v[0] != schemaVersion {
		return fmt.Errorf("layout version %v, this binary reads only %d", v, schemaVersion)
	}
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			touch(k, v)
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					if err := pagesOf(nb); err != nil {
						return err
					}
					return walk(nb)
				}
			}
			return nil
		})
	}
	return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if string(name) == string(bucketMeta) {
			return walk(b)
		}
		if err := pagesOf(b); err != nil {
			return err
		}
		if string(name) != string(bucketImports) {
			return walk(b)
		}
		return b.ForEachBucket(func(peer []byte) error {
			sum.Peers++
			pb := b.Bucket(peer)
			if err := pagesOf(pb); err != nil {
				return err
			}
			return pb.ForEach(func(k, v []byte) error {
				touch(k, v)
				if _, _, err := decodeRecord(v); err != nil {
					return fmt.Errorf("import %s of peer %s: %w", untrusted.Quote(string(k)), untrusted.Quote(string(peer)), err)
				}
				sum.Imports++
				return nil
			})
		})
	})
}
