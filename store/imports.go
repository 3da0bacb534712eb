package store

import (
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// PutImport stores r, replacing what was stored under its peer and id, and
// returns once it is on disk. Invalid input changes nothing.
func (s *Store) PutImport(r Record) error {
	v, err := checkRecord(r)
	if err != nil {
		return importErr("put", r.Peer, r.ResourceID, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return putRecord(tx, r.Peer, r.ResourceID, v)
	})
	return importErr("put", r.Peer, r.ResourceID, err)
}

// PutImports stores every record in one transaction, all or none: one fsync
// for a burst of responses (a peer's full catalog on connect) instead of one
// each. Invalid input anywhere changes nothing.
func (s *Store) PutImports(rs []Record) error {
	vs := make([][]byte, len(rs))
	for i, r := range rs {
		v, err := checkRecord(r)
		if err != nil {
			return importErr("put", r.Peer, r.ResourceID, err)
		}
		vs[i] = v
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for i, r := range rs {
			if err := putRecord(tx, r.Peer, r.ResourceID, vs[i]); err != nil {
				return importErr("put", r.Peer, r.ResourceID, err)
			}
		}
		return nil
	})
}

// ImportWrite is one write of a batch: a put of Record, or with Delete the
// removal of Record.Peer's Record.ResourceID (its Service is then unused).
type ImportWrite struct {
	Record
	Delete bool
}

// WriteImports applies ws in order in one transaction, all or none, and
// returns once it is on disk: one fsync for a run of responses. A later
// write of a key wins over an earlier one, as if they had been applied one
// by one. A peer left with no import loses its bucket, as with
// DeleteImport. Invalid input anywhere changes nothing.
func (s *Store) WriteImports(ws []ImportWrite) error {
	if len(ws) == 0 {
		return nil
	}
	vs := make([][]byte, len(ws))
	for i, w := range ws {
		if w.Delete {
			if err := checkKeys(w.Peer, w.ResourceID); err != nil {
				return importErr("delete", w.Peer, w.ResourceID, err)
			}
			continue
		}
		v, err := checkRecord(w.Record)
		if err != nil {
			return importErr("put", w.Peer, w.ResourceID, err)
		}
		vs[i] = v
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		imports := tx.Bucket(bucketImports)
		// Peers with a delete in the batch, in order of first delete, so
		// that an emptied bucket is dropped once the batch is applied.
		var emptied []string
		for i, w := range ws {
			if !w.Delete {
				if err := putRecord(tx, w.Peer, w.ResourceID, vs[i]); err != nil {
					return importErr("put", w.Peer, w.ResourceID, err)
				}
				continue
			}
			b := imports.Bucket([]byte(w.Peer))
			if b == nil {
				continue
			}
			if err := b.Delete([]byte(w.ResourceID)); err != nil {
				return importErr("delete", w.Peer, w.ResourceID, err)
			}
			if !slices.Contains(emptied, w.Peer) {
				emptied = append(emptied, w.Peer)
			}
		}
		for _, peer := range emptied {
			b := imports.Bucket([]byte(peer))
			if k, _ := b.Cursor().First(); k == nil {
				if err := imports.DeleteBucket([]byte(peer)); err != nil {
					return peerErr("delete", peer, err)
				}
			}
		}
		return nil
	})
}

func checkRecord(r Record) ([]byte, error) {
	if err := checkKeys(r.Peer, r.ResourceID); err != nil {
		return nil, err
	}
	if len(r.Service) == 0 {
		return nil, ErrEmptyService
	}
	stale, err := staleNanos(r.StaleSince)
	if err != nil {
		return nil, err
	}
	return encodeRecord(stale, r.Service), nil
}

func checkKeys(peer, id string) error {
	return checkPath(peer, id, ErrEmptyPeer, ErrEmptyID)
}

func putRecord(tx *bolt.Tx, peer, id string, v []byte) error {
	b, err := tx.Bucket(bucketImports).CreateBucketIfNotExists([]byte(peer))
	if err != nil {
		return err
	}
	return b.Put([]byte(id), v)
}

// DeleteImport removes one import. Removing what is not there is no error:
// Hamlet deletes are idempotent.
func (s *Store) DeleteImport(peer, resourceID string) error {
	if err := checkKeys(peer, resourceID); err != nil {
		return importErr("delete", peer, resourceID, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		imports := tx.Bucket(bucketImports)
		b := imports.Bucket([]byte(peer))
		if b == nil {
			return nil
		}
		if err := b.Delete([]byte(resourceID)); err != nil {
			return err
		}
		// Drop the peer's bucket with its last import, so that peers that
		// come and go leave nothing behind.
		if k, _ := b.Cursor().First(); k == nil {
			return imports.DeleteBucket([]byte(peer))
		}
		return nil
	})
	return importErr("delete", peer, resourceID, err)
}

// SetStale marks every import of peer as stale since the given time, or
// fresh with the zero time, in one transaction. Records already so marked
// are not rewritten.
func (s *Store) SetStale(peer string, since time.Time) error {
	if peer == "" {
		return peerErr("mark stale", peer, ErrEmptyPeer)
	}
	n, err := staleNanos(since)
	if err != nil {
		return peerErr("mark stale", peer, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImports).Bucket([]byte(peer))
		if b == nil {
			return nil
		}
		// bbolt forbids writing a bucket while a cursor walks it, so the
		// new values are gathered first. They are built in the write
		// transaction's own memory, not views into the file.
		var keys, vals [][]byte
		err := b.ForEach(func(k, v []byte) error {
			old, svc, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("id %q: %w", k, err)
			}
			if old != n {
				keys = append(keys, append([]byte(nil), k...))
				vals = append(vals, encodeRecord(n, svc))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i := range keys {
			if err := b.Put(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return peerErr("mark stale", peer, err)
}

// DeletePeer removes every import of peer.
func (s *Store) DeletePeer(peer string) error {
	if peer == "" {
		return peerErr("delete", peer, ErrEmptyPeer)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketImports).DeleteBucket([]byte(peer))
		if errors.Is(err, bolterrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	return peerErr("delete", peer, err)
}

// Imports returns every import, sorted by peer then resource id (bbolt's
// byte order, which is Go's string order). This is the restore path.
func (s *Store) Imports() ([]Record, error) {
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		imports := tx.Bucket(bucketImports)
		var err error
		out, err = readRecords(func(fn func(peer string, b *bolt.Bucket) error) error {
			return imports.ForEachBucket(func(peer []byte) error {
				return fn(string(peer), imports.Bucket(peer))
			})
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: read imports: %w", err)
	}
	return out, nil
}

// PeerImports returns the imports of one peer, sorted by resource id.
func (s *Store) PeerImports(peer string) ([]Record, error) {
	if peer == "" {
		return nil, peerErr("read", peer, ErrEmptyPeer)
	}
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImports).Bucket([]byte(peer))
		if b == nil {
			return nil
		}
		var err error
		out, err = readRecords(func(fn func(string, *bolt.Bucket) error) error {
			return fn(peer, b)
		})
		return err
	})
	if err != nil {
		return nil, peerErr("read", peer, err)
	}
	return out, nil
}

// readRecords copies the records of the peer buckets that each visits out of
// the memory map, which is only valid inside the transaction. It walks them
// twice: once to size, once to copy, so that the records and all service
// bytes take two allocations rather than growing (restore reads 100,000 of
// them). The catalog decodes and drops the bytes, so their shared backing
// array does not outlive the restore.
func readRecords(each func(fn func(peer string, b *bolt.Bucket) error) error) ([]Record, error) {
	n, size := 0, 0
	err := each(func(_ string, b *bolt.Bucket) error {
		return b.ForEach(func(_, v []byte) error {
			n++
			size += len(v)
			return nil
		})
	})
	if err != nil || n == 0 {
		return nil, err
	}
	out := make([]Record, 0, n)
	arena := make([]byte, 0, size)
	err = each(func(peer string, b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			stale, svc, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("import %q of peer %q: %w", k, peer, err)
			}
			start := len(arena)
			arena = append(arena, svc...)
			out = append(out, Record{
				Peer:       peer,
				ResourceID: string(k),
				// Capped, so that an append by the caller cannot run
				// into the next record's bytes.
				Service:    arena[start:len(arena):len(arena)],
				StaleSince: staleTime(stale),
			})
			return nil
		})
	})
	return out, err
}

func importErr(op, peer, id string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s import %q of peer %q: %w", op, id, peer, err)
}

func peerErr(op, peer string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s imports of peer %q: %w", op, peer, err)
}
