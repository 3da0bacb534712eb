package file

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
)

// Source is a registry.Source that reads a registry file and follows it.
type Source struct {
	path     string
	maxBytes int64
	log      *zap.Logger
	// holdOff is how quiet the directory must be before the file is read
	// again: an editor's save or a ConfigMap swap is a burst of events.
	// maxDelay bounds the wait when events never stop.
	holdOff, maxDelay time.Duration

	mu     sync.Mutex
	status registry.SourceStatus
}

// Status reports how reading the file goes.
func (s *Source) Status() registry.SourceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// fresh reports whether err is a problem the status does not hold yet.
func (s *Source) fresh(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return err != nil && (s.status.Err == nil || s.status.Err.Error() != err.Error())
}

// record notes a read and its problem (nil for a good file), fresh or not.
func (s *Source) record(err error, fresh bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Reads++
	if fresh {
		s.status.Reported++
	}
	s.status.Err = err
}

// New returns a source for the registry file at path, which is read as
// Read reads it.
func New(path string, maxBytes int64, log *zap.Logger) *Source {
	return &Source{path: path, maxBytes: maxBytes, log: log.With(zap.String("path", path)), holdOff: 100 * time.Millisecond, maxDelay: time.Second}
}

// Run implements registry.Source.
func (s *Source) Run(ctx context.Context, update func([]model.Export)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("registry file %s: %w", s.path, err)
	}
	defer w.Close()
	// The watch starts before the first read, so that no change falls
	// between the two.
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("registry file %s: watching its directory: %w", s.path, err)
	}
	st := &state{}
	if st.last, err = s.read(); err != nil && !errors.Is(err, errEmpty) {
		return err
	}
	update(st.last)

	timer := time.NewTimer(0)
	timer.Stop()
	var first time.Time // of the events not read yet; zero when none
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("registry file watcher closed")
			}
			// An overflow means events were lost: read again to be sure.
			s.log.Warn("registry file watch error", zap.Error(err))
			first = s.schedule(timer, first)
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("registry file watcher closed")
			}
			if s.ours(ev.Name) {
				first = s.schedule(timer, first)
			}
		case <-timer.C:
			first = time.Time{}
			s.reload(st, update)
		}
	}
}

// state is what Run remembers between reads.
type state struct {
	last []model.Export
	// failing is set while the file has a problem (Status says which).
	failing bool
}

// ours says whether an event in the directory may change what the file
// reads: one on the file itself, or a Kubernetes ConfigMap or Secret
// swap, which renames ..data (and makes ..<timestamp> folders), not the
// file. Another file's events (a log written beside it) are not.
func (s *Source) ours(name string) bool {
	return filepath.Clean(name) == filepath.Clean(s.path) || strings.HasPrefix(filepath.Base(name), "..")
}

// reload reads the file and hands a changed set on. A problem keeps the
// last good set, and is reported once until the file changes again.
func (s *Source) reload(st *state, update func([]model.Export)) {
	set, err := s.read()
	fresh := s.fresh(err)
	st.failing = st.failing || err != nil
	// The status shows a problem once its warning is logged, and a good
	// read before its set is handed on: whoever sees one finds the other.
	switch {
	case errors.Is(err, errEmpty):
		// Met mid-write far more often than meant: a writer that
		// truncates first shows an empty file for a moment, and taking
		// it would withdraw every export.
		if fresh {
			s.log.Warn(errEmpty.Error())
		}
		s.record(err, fresh)
		return
	case err != nil:
		if fresh {
			s.log.Warn("registry file not reloaded; the last good set stays", zap.Error(err))
		}
		s.record(err, fresh)
		return
	}
	s.record(nil, false)
	if st.failing {
		st.failing = false
		s.log.Info("registry file readable again")
	}
	if reflect.DeepEqual(set, st.last) {
		s.log.Debug("registry file read, unchanged")
		return
	}
	st.last = set
	s.log.Info("registry file reloaded", zap.Int("services", len(set)))
	update(set)
}

// schedule (re)arms the timer for a read after the hold-off, but no later
// than maxDelay after the first event not read yet.
func (s *Source) schedule(timer *time.Timer, first time.Time) time.Time {
	now := time.Now()
	if first.IsZero() {
		first = now
	}
	timer.Reset(max(0, min(s.holdOff, s.maxDelay-now.Sub(first))))
	return first
}

var errEmpty = errors.New(`registry file is empty; the last good set stays (write "services: []" to export nothing)`)

// read reads and parses the file. A zero-byte file is an empty set at start
// but errEmpty after, when Run tells the two apart.
func (s *Source) read() ([]model.Export, error) {
	b, err := readFile(s.path, s.maxBytes)
	if err != nil {
		return nil, err
	}
	set, err := Parse(b, s.path)
	if err == nil && len(b) == 0 {
		return set, errEmpty
	}
	return set, err
}

// Read reads and parses the registry file at path. It refuses, before
// parsing, a file that is not a regular file, that a symbolic link leads
// to out of its folder (a Kubernetes ConfigMap's links stay inside), or
// that is larger than maxBytes (exports.maxFileBytes; 0 is
// untrusted.DefaultMaxFileBytes). Its errors never hold more of the file
// than a short excerpt of the value they are about.
func Read(path string, maxBytes int64) ([]model.Export, error) {
	b, err := readFile(path, maxBytes)
	if err != nil {
		return nil, err
	}
	return Parse(b, path)
}

func readFile(path string, maxBytes int64) ([]byte, error) {
	b, err := untrusted.File{MaxBytes: maxBytes, Limit: "exports.maxFileBytes"}.Read(path)
	if err != nil {
		return nil, fmt.Errorf("registry file: %w", err)
	}
	return b, nil
}
