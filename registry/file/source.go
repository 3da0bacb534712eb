package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/model"
)

// Source is a registry.Source that reads a registry file and follows it.
type Source struct {
	path string
	log  *zap.Logger
	// holdOff is how quiet the directory must be before the file is read
	// again: an editor's save or a ConfigMap swap is a burst of events.
	// maxDelay bounds the wait when events never stop.
	holdOff, maxDelay time.Duration
}

// New returns a source for the registry file at path.
func New(path string, log *zap.Logger) *Source {
	return &Source{path: path, log: log.With(zap.String("path", path)), holdOff: 100 * time.Millisecond, maxDelay: time.Second}
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
	last, err := s.read()
	if err != nil && !errors.Is(err, errEmpty) {
		return err
	}
	update(last)

	timer := time.NewTimer(0)
	timer.Stop()
	var first time.Time // of the events not read yet; zero when none
	broken := false
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
		case _, ok := <-w.Events:
			if !ok {
				return errors.New("registry file watcher closed")
			}
			// Any event in the directory may be ours: a ConfigMap swap
			// renames ..data, not the file. An unchanged set is skipped
			// below, so reading too often costs only a read.
			first = s.schedule(timer, first)
		case <-timer.C:
			first = time.Time{}
			set, err := s.read()
			if errors.Is(err, errEmpty) {
				// Met mid-write far more often than meant: a writer that
				// truncates first shows an empty file for a moment, and
				// taking it would withdraw every export.
				s.log.Warn("registry file is empty; the last good set stays (write \"services: []\" to export nothing)")
				continue
			}
			if err != nil {
				broken = true
				s.log.Warn("registry file not reloaded; the last good set stays", zap.Error(err))
				continue
			}
			if broken {
				broken = false
				s.log.Info("registry file readable again")
			}
			if reflect.DeepEqual(set, last) {
				s.log.Debug("registry file read, unchanged")
				continue
			}
			last = set
			s.log.Info("registry file reloaded", zap.Int("services", len(set)))
			update(set)
		}
	}
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

var errEmpty = errors.New("registry file is empty")

// read reads and parses the file. A zero-byte file is an empty set at start
// but errEmpty after, when Run tells the two apart.
func (s *Source) read() ([]model.Export, error) {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("registry file: %w", err)
	}
	set, err := Parse(b, s.path)
	if err == nil && len(b) == 0 {
		return set, errEmpty
	}
	return set, err
}
