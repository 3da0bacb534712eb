// Package store is the agent's embedded, crash-safe store (bbolt): the
// services each peer published, written before they are acknowledged and
// restored on start, and a small key-value space for other state that must
// survive a restart (such as allocated listener ports).
//
// Layout, one top-level bucket per kind:
//
//	meta                 schema → layout version (1 byte)
//	imports / <peer>     <resource id> → record (see record.go)
//	kv / <bucket>        <key> → value
//
// A nested bucket per peer keeps peer names and resource ids apart without a
// separator, so any two strings are a valid, unambiguous pair.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"
)

var (
	bucketMeta    = []byte("meta")
	bucketImports = []byte("imports")
	bucketKV      = []byte("kv")
	keySchema     = []byte("schema")
)

// schemaVersion is the layout this code writes and reads. It changes only
// when an older binary could no longer read the file correctly; record
// contents evolve compatibly inside their envelope instead.
const schemaVersion = 1

// DefaultTimeout is how long Open waits for another process to release the
// file before giving up.
const DefaultTimeout = 2 * time.Second

// Store is safe for concurrent use. Each write is one fsynced transaction.
type Store struct {
	db   *bolt.DB
	path string
}

type options struct {
	timeout time.Duration
	log     *zap.Logger
}

// Option configures Open.
type Option func(*options)

// WithTimeout sets how long Open waits for the file lock (default
// DefaultTimeout). It must be positive: bbolt would otherwise wait forever,
// and an agent that hangs on start is worse than one that says why it
// cannot.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithLog logs what Open finds: a new store, and the check of an existing
// one. Without it Open logs nothing.
func WithLog(log *zap.Logger) Option {
	return func(o *options) { o.log = log }
}

// Open opens the store at path, creating the file (mode 0600) and its parent
// directory (0700) when missing: imports say which peers this mesh trusts
// and how to reach them, which is no one else's business. It fails with an
// error wrapping ErrLocked when another process holds the file.
//
// An existing file is checked first (Check): a damaged one fails with an
// error wrapping ErrDamaged that says the way out, rather than a panic
// inside bbolt later. A missing or empty file is a new store, logged as
// such; an empty one as a warning, since a store that held imports is
// never empty.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{timeout: DefaultTimeout, log: zap.NewNop()}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	sum, err := checkAs("open", path, opts)
	if err != nil {
		return nil, err
	}
	switch {
	case sum.New && !sum.Empty:
		o.log.Info("new store", zap.String("path", path), zap.String("found", sum.Found()))
	case sum.New:
		o.log.Warn("new store: the file was empty; if it held imports, they are lost (restore it from a backup, or peers send their services again when they reconnect)",
			zap.String("path", path), zap.String("found", sum.Found()))
	default:
		o.log.Info("store checked", zap.String("path", path), zap.Int64("bytes", sum.Bytes), zap.Int("peers", sum.Peers), zap.Int("imports", sum.Imports))
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %q: %w (gave up after %s; is another meshfed running on it?)", path, ErrLocked, o.timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, []byte{schemaVersion}); err != nil {
				return err
			}
		case len(v) != 1 || v[0] != schemaVersion:
			return fmt.Errorf("layout version %v, this binary reads only %d", v, schemaVersion)
		}
		for _, b := range [][]byte{bucketImports, bucketKV} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close() // the open error is the one worth reporting
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Close releases the file. Writes already returned are on disk.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %q: %w", s.path, err)
	}
	return nil
}

// Path is the file the store is kept in.
func (s *Store) Path() string { return s.path }

// checkPath checks the two names that reach a value, a nested bucket's and
// the key's in it (a peer's and a resource id, a KV bucket's and a key),
// with the errors that say which one is empty.
func checkPath(bucket, key string, emptyBucket, emptyKey error) error {
	switch {
	case bucket == "":
		return emptyBucket
	case key == "":
		return emptyKey
	case len(bucket) > bolt.MaxKeySize || len(key) > bolt.MaxKeySize:
		return ErrKeyTooLong
	}
	return nil
}
