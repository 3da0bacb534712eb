package certs

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

const (
	// reloadHoldoff lets a writer finish replacing a certificate and its key
	// before we read them, so a rotation is one reload rather than a failed
	// half-rotation followed by a good one.
	reloadHoldoff = 100 * time.Millisecond
	// resyncInterval re-reads files even without events, because inotify
	// does not report changes on some network and overlay file systems.
	resyncInterval = time.Minute
)

// fileWatcher calls reload after files change on disk. It watches the
// directories, not the files: cert-manager and the kubelet replace files by
// renaming a new file (or a new "..data" symlink) over the old one, which a
// watch on the old inode would never see. reload is told whether files
// changed since it last ran (event), or it runs on a timer: the periodic
// resync, or the positive duration it last returned (a pair of files
// still settling, a certificate valid from then on).
type fileWatcher struct {
	w    *fsnotify.Watcher
	done chan struct{}
	wg   sync.WaitGroup
}

func watchFiles(paths []string, log *zap.Logger, reload func(event bool) time.Duration) (*fileWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	dirs := map[string]bool{}
	for _, p := range paths {
		dirs[filepath.Dir(filepath.Clean(p))] = true
		// A symlink into another directory (a mounted secret) changes there.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs[filepath.Dir(real)] = true
		}
	}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			_ = w.Close()
			return nil, err
		}
	}
	fw := &fileWatcher{w: w, done: make(chan struct{})}
	fw.wg.Add(1)
	go fw.run(log, reload)
	return fw, nil
}

func (fw *fileWatcher) run(log *zap.Logger, reload func(event bool) time.Duration) {
	defer fw.wg.Done()
	holdoff := time.NewTimer(time.Hour)
	holdoff.Stop()
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	load := func(event bool) {
		recheck.Stop()
		if again := reload(event); again > 0 {
			recheck.Reset(again)
		}
	}
	for {
		select {
		case <-fw.done:
			holdoff.Stop()
			recheck.Stop()
			return
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			holdoff.Reset(reloadHoldoff)
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			log.Warn("file watch error", zap.Error(err))
		case <-holdoff.C:
			load(true)
		case <-recheck.C:
			load(false)
		case <-resync.C:
			load(false)
		}
	}
}

// Close stops watching and waits until no reload is running.
func (fw *fileWatcher) Close() error {
	close(fw.done)
	err := fw.w.Close()
	fw.wg.Wait()
	return err
}
