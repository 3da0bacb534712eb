package store

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Put stores value under key in the named bucket of the key-value space,
// creating the bucket. Buckets are for small state other packages must keep
// across restarts, such as the listener port allocated to an import.
func (s *Store) Put(bucket, key string, value []byte) error {
	return s.Apply(bucket, map[string][]byte{key: value}, nil)
}

// Get returns a copy of the value under key, and whether there is one.
func (s *Store) Get(bucket, key string) ([]byte, bool, error) {
	if err := checkKV(bucket, key); err != nil {
		return nil, false, kvErr("get", bucket, key, err)
	}
	var out []byte
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		// Seek rather than Get: Get cannot tell an empty value from a
		// missing one.
		k, v := b.Cursor().Seek([]byte(key))
		if k != nil && bytes.Equal(k, []byte(key)) {
			out, ok = append([]byte{}, v...), true
		}
		return nil
	})
	if err != nil {
		return nil, false, kvErr("get", bucket, key, err)
	}
	return out, ok, nil
}

// Delete removes key; a missing key or bucket is no error.
func (s *Store) Delete(bucket, key string) error {
	if err := checkKV(bucket, key); err != nil {
		return kvErr("delete", bucket, key, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
	return kvErr("delete", bucket, key, err)
}

// DeleteBucket removes a bucket and all it holds; a missing one is no error.
func (s *Store) DeleteBucket(bucket string) error {
	if bucket == "" {
		return fmt.Errorf("store: delete bucket %q: %w", bucket, ErrEmptyBucket)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketKV).DeleteBucket([]byte(bucket))
		if errors.Is(err, bolterrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: delete bucket %q: %w", bucket, err)
	}
	return nil
}

// ForEach calls fn for every entry of bucket in key order and stops at the
// first error fn returns, which it returns as is. fn runs after the read
// transaction has ended, on copies, so it may call the Store itself (a
// write from inside a read transaction could deadlock bbolt).
func (s *Store) ForEach(bucket string, fn func(key string, value []byte) error) error {
	if bucket == "" {
		return fmt.Errorf("store: read bucket %q: %w", bucket, ErrEmptyBucket)
	}
	var keys []string
	var vals [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			keys = append(keys, string(k))
			vals = append(vals, append([]byte{}, v...))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store: read bucket %q: %w", bucket, err)
	}
	for i := range keys {
		if err := fn(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func checkKV(bucket, key string) error {
	return checkPath(bucket, key, ErrEmptyBucket, ErrEmptyKey)
}

func kvErr(op, bucket, key string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s %q in bucket %q: %w", op, key, bucket, err)
}

// Apply sets every key of puts and removes every key of deletes in one
// transaction (one fsync): all of it is stored, or none.
func (s *Store) Apply(bucket string, puts map[string][]byte, deletes []string) error {
	if len(puts) == 0 && len(deletes) == 0 {
		return nil
	}
	for k := range puts {
		if err := checkKV(bucket, k); err != nil {
			return kvErr("put", bucket, k, err)
		}
	}
	for _, k := range deletes {
		if err := checkKV(bucket, k); err != nil {
			return kvErr("delete", bucket, k, err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketKV).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		for _, k := range deletes {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for k, v := range puts {
			if v == nil {
				v = []byte{} // bbolt tells a nil value from a nested bucket by it
			}
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: apply to bucket %q: %w", bucket, err)
	}
	return nil
}

// Bucket is one bucket of the store, for a component that owns it.
type Bucket struct {
	s    *Store
	name string
}

// Bucket returns the bucket name.
func (s *Store) Bucket(name string) Bucket { return Bucket{s: s, name: name} }

// ForEach is Store.ForEach on the bucket.
func (b Bucket) ForEach(fn func(key string, value []byte) error) error {
	return b.s.ForEach(b.name, fn)
}

// Apply is Store.Apply on the bucket.
func (b Bucket) Apply(puts map[string][]byte, deletes []string) error {
	return b.s.Apply(b.name, puts, deletes)
}
