package cache

import (
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Debouncer coalesces bursts of changes into one Apply per role: it applies
// once no change came for Holdoff, and at the latest MaxDelay after the first
// change it holds. A later change to the same resource replaces an earlier one.
type Debouncer struct {
	apply    func(Role, []Change) error
	holdoff  time.Duration
	maxDelay time.Duration
	log      *zap.Logger

	// applyMu keeps batches in order: a timer firing while a Flush runs
	// waits for it.
	applyMu sync.Mutex

	mu      sync.Mutex
	pending map[Role]*pendingBatch
	first   time.Time
	timer   *time.Timer
	stopped bool
}

type pendingBatch struct {
	changes []Change
	index   map[resourceKey]int
}

// Default hold-off and maximum delay of a Debouncer.
const (
	DefaultHoldoff  = 10 * time.Millisecond
	DefaultMaxDelay = 100 * time.Millisecond
)

// NewDebouncer returns a Debouncer feeding apply, usually Cache.Apply. Zero
// durations take the defaults; apply errors are logged, since the rest of the
// batch was applied and there is no caller left to tell.
func NewDebouncer(apply func(Role, []Change) error, holdoff, maxDelay time.Duration, log *zap.Logger) *Debouncer {
	if holdoff <= 0 {
		holdoff = DefaultHoldoff
	}
	if maxDelay <= 0 {
		maxDelay = DefaultMaxDelay
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Debouncer{
		apply:    apply,
		holdoff:  min(holdoff, maxDelay),
		maxDelay: maxDelay,
		log:      log,
		pending:  make(map[Role]*pendingBatch),
	}
}

// Submit queues changes of a role.
func (d *Debouncer) Submit(role Role, changes ...Change) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped || len(changes) == 0 {
		return
	}
	b, ok := d.pending[role]
	if !ok {
		b = &pendingBatch{index: make(map[resourceKey]int)}
		d.pending[role] = b
	}
	for _, ch := range changes {
		k := resourceKey{ch.TypeURL, ch.Name}
		if i, ok := b.index[k]; ok {
			b.changes[i] = ch
			continue
		}
		b.index[k] = len(b.changes)
		b.changes = append(b.changes, ch)
	}
	if d.first.IsZero() {
		d.first = now
	}
	wait := min(d.holdoff, d.first.Add(d.maxDelay).Sub(now))
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.fire)
	} else {
		d.timer.Reset(wait)
	}
}

func (d *Debouncer) fire() {
	if err := d.Flush(); err != nil {
		d.log.Error("applying debounced changes", zap.Error(err))
	}
}

// Flush applies what is pending now.
func (d *Debouncer) Flush() error {
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	d.mu.Lock()
	pending := d.pending
	d.pending = make(map[Role]*pendingBatch)
	d.first = time.Time{}
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()

	var errs []error
	for role, b := range pending {
		if err := d.apply(role, b.changes); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stop drops what is pending and ignores further changes.
func (d *Debouncer) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	d.pending = make(map[Role]*pendingBatch)
	if d.timer != nil {
		d.timer.Stop()
	}
}
