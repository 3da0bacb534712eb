package consul

import (
	"context"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// queue holds the services to read, each once however often it is
// added. A service whose checks changed goes before those of a sweep: one
// change is not held up behind the thousands of reads a registration
// elsewhere in the datacenter costs.
type queue struct {
	mu            sync.Mutex
	urgent, sweep []string
	where         map[string]uint8 // inSweep or inUrgent while queued
	ready         chan struct{}    // a token while names wait
}

const (
	inSweep uint8 = iota + 1
	inUrgent
)

func newQueue() *queue {
	return &queue{where: map[string]uint8{}, ready: make(chan struct{}, 1)}
}

func (q *queue) add(urgent bool, names ...string) {
	q.mu.Lock()
	for _, n := range names {
		switch w := q.where[n]; {
		case urgent && w != inUrgent:
			// One left in the sweep list is skipped when it comes up.
			q.where[n] = inUrgent
			q.urgent = append(q.urgent, n)
		case !urgent && w == 0:
			q.where[n] = inSweep
			q.sweep = append(q.sweep, n)
		}
	}
	q.mu.Unlock()
	q.wake()
}

func (q *queue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// next takes the next name, waiting for one until ctx is done.
func (q *queue) next(ctx context.Context) (string, bool) {
	for {
		if n, ok := q.take(); ok {
			return n, true
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-q.ready:
		}
	}
}

func (q *queue) take() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	defer func() {
		if len(q.where) > 0 {
			q.wake() // for the next reader
		}
	}()
	for len(q.urgent) > 0 {
		n := q.urgent[0]
		q.urgent = q.urgent[1:]
		if q.where[n] == inUrgent {
			delete(q.where, n)
			return n, true
		}
	}
	for len(q.sweep) > 0 {
		n := q.sweep[0]
		q.sweep = q.sweep[1:]
		if q.where[n] == inSweep {
			delete(q.where, n)
			return n, true
		}
	}
	return "", false
}

// retries schedules the reads that failed again, each with a backoff of
// its own that a success resets.
type retries struct {
	mu    sync.Mutex
	due   map[string]time.Time
	bo    map[string]backoff.BackOff
	added chan struct{} // a token when a name was scheduled
}

func newRetries() *retries {
	return &retries{due: map[string]time.Time{}, bo: map[string]backoff.BackOff{}, added: make(chan struct{}, 1)}
}

// failed schedules name again and returns in how long.
func (r *retries) failed(name string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bo[name]
	if b == nil {
		b = newBackoff()
		r.bo[name] = b
	}
	d := b.NextBackOff()
	r.due[name] = time.Now().Add(d)
	select {
	case r.added <- struct{}{}:
	default:
	}
	return d
}

// done forgets name: it was read, or is no longer a candidate.
func (r *retries) done(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.due, name)
	delete(r.bo, name)
}

// run hands the names due to requeue until ctx is done.
func (r *retries) run(ctx context.Context, requeue func(names ...string)) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		r.mu.Lock()
		var now, first = time.Now(), time.Time{}
		var names []string
		for n, at := range r.due {
			switch {
			case !at.After(now):
				names = append(names, n)
				delete(r.due, n)
			case first.IsZero() || at.Before(first):
				first = at
			}
		}
		r.mu.Unlock()
		if len(names) > 0 {
			requeue(names...)
		}
		wait := time.Hour
		if !first.IsZero() {
			wait = time.Until(first)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-r.added:
		case <-t.C:
		}
	}
}
