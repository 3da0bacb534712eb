package store

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An online backup is the store as one read transaction saw it while
// writes went on: it passes the check, and holds a prefix of the writes
// made one after the other.
func TestBackupWhileWriting(t *testing.T) {
	s, _ := open(t)
	require.NoError(t, s.PutImport(rec("mesh-b", "svc-0000", "x")))
	stop, going := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			require.NoError(t, s.PutImport(rec("mesh-b", fmt.Sprintf("svc-%04d", i), "x")))
			if i == 20 {
				close(going)
			}
		}
	})
	<-going
	out := filepath.Join(t.TempDir(), "backup.db")
	sum, err := WriteBackup(out, func(w io.Writer) error {
		return s.Backup(func(int64) (io.Writer, error) { return w, nil })
	})
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	copied, err := Open(out)
	require.NoError(t, err)
	defer copied.Close()
	recs, err := copied.Imports()
	require.NoError(t, err)
	require.Equal(t, sum.Imports, len(recs))
	for i, r := range recs {
		require.Equal(t, fmt.Sprintf("svc-%04d", i), r.ResourceID, "no write missing before the last one copied")
	}
}

func TestBackupFile(t *testing.T) {
	s, path := open(t)
	require.NoError(t, s.PutImport(rec("mesh-b", "payments", "p")))
	out := filepath.Join(t.TempDir(), "backup.db")

	// Held by a process (this one's store): the caller asks the agent.
	_, err := BackupFile(path, out, WithTimeout(50*time.Millisecond))
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, s.Close())

	sum, err := BackupFile(path, out)
	require.NoError(t, err)
	require.Equal(t, 1, sum.Imports)
	require.Equal(t, 1, sum.Peers)

	// A damaged store is no source of a backup; what was at out stays.
	require.NoError(t, os.WriteFile(path, make([]byte, 3*pageSize), 0o600))
	before, err := os.ReadFile(out)
	require.NoError(t, err)
	_, err = BackupFile(path, out)
	require.ErrorIs(t, err, ErrDamaged)
	after, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, before, after)

	_, err = BackupFile(filepath.Join(t.TempDir(), "missing.db"), out)
	require.ErrorContains(t, err, "there is no store yet (no file)")
}

// A copy that is not a whole store is not put in place.
func TestWriteBackupChecksTheCopy(t *testing.T) {
	out := filepath.Join(t.TempDir(), "backup.db")
	require.NoError(t, os.WriteFile(out, []byte("the last good backup"), 0o600))
	_, err := WriteBackup(out, func(w io.Writer) error {
		_, err := w.Write(make([]byte, 2*pageSize))
		return err
	})
	require.ErrorIs(t, err, ErrDamaged)
	require.ErrorContains(t, err, `store: backup to "`+out+`": the copy does not pass the check: `)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "the last good backup", string(b))
	left, err := filepath.Glob(filepath.Join(filepath.Dir(out), ".backup.db.*"))
	require.NoError(t, err)
	require.Empty(t, left, "no temporary file left behind")
}
