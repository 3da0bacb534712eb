package store

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the store as one read transaction sees
// it, while writes go on (bbolt's online backup, tx.WriteTo), to the
// writer that open returns once it knows the copy's size.
func (s *Store) Backup(open func(size int64) (io.Writer, error)) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		w, err := open(tx.Size())
		if err != nil {
			return err
		}
		_, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: backup of %q: %w", s.path, err)
	}
	return nil
}

// BackupFile copies the store at path, which no agent may hold (a running
// agent's store is copied by Store.Backup, over its admin API), to out as
// WriteBackup writes it. The store is checked first: a copy of a damaged
// store is no backup. It fails with an error wrapping ErrLocked when a
// process holds the store.
func BackupFile(path, out string, opts ...Option) (Summary, error) {
	sum, err := Check(path, opts...)
	if err != nil {
		return Summary{}, err
	}
	if sum.New {
		return Summary{}, fmt.Errorf("store: backup of %q: there is no store yet (%s)", path, sum.Found())
	}
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: o.timeout})
	if err != nil {
		return Summary{}, fmt.Errorf("store: backup of %q: %w", path, err)
	}
	defer db.Close()
	return WriteBackup(out, func(w io.Writer) error {
		return db.View(func(tx *bolt.Tx) error {
			_, err := tx.WriteTo(w)
			return err
		})
	})
}

// WriteBackup writes a backup to out through write: to a file beside out
// (mode 0600: imports are this mesh's business), synced, checked as a
// store, and only then renamed over out, so that out is a whole, checked
// backup or is left as it was.
func WriteBackup(out string, write func(io.Writer) error) (Summary, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return Summary{}, fmt.Errorf("store: backup to %q: %w", out, err)
	}
	defer os.Remove(tmp.Name()) // once renamed, there is nothing left to remove
	err = write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Summary{}, fmt.Errorf("store: backup to %q: %w", out, err)
	}
	sum, err := Check(tmp.Name())
	if err == nil && sum.New {
		err = fmt.Errorf("the copy is empty")
	}
	if err != nil {
		return Summary{}, fmt.Errorf("store: backup to %q: the copy does not pass the check: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return Summary{}, fmt.Errorf("store: backup to %q: %w", out, err)
	}
	return sum, nil
}
