package catalog

import (
	"slices"
	"sync"

	"github.com/meshfed/meshfed/model"
)

// Subscription collects the keys that changed since it was last drained.
// It holds a set, not a log: a key that changes a hundred times between two
// drains is reported once, so its memory is bounded by the catalog's size
// however fast entries churn, and a reader reads the latest state.
type Subscription struct {
	c     *Catalog
	ch    chan struct{}
	mu    sync.Mutex
	dirty map[model.Key]struct{}
}

// Subscribe starts collecting changes.
func (c *Catalog) Subscribe() *Subscription {
	s := &Subscription{c: c, ch: make(chan struct{}, 1), dirty: map[model.Key]struct{}{}}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s
}

// C receives a value whenever keys are waiting to be drained.
func (s *Subscription) C() <-chan struct{} { return s.ch }

// Drain returns the keys changed since the last call, sorted, and forgets
// them.
func (s *Subscription) Drain() []model.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]model.Key, 0, len(s.dirty))
	for k := range s.dirty {
		out = append(out, k)
	}
	clear(s.dirty)
	slices.SortFunc(out, model.CompareKeys)
	return out
}

// Close stops collecting.
func (s *Subscription) Close() {
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
}

func (c *Catalog) notifyLocked(k model.Key) {
	for s := range c.subs {
		s.mu.Lock()
		s.dirty[k] = struct{}{}
		s.mu.Unlock()
		select {
		case s.ch <- struct{}{}:
		default:
		}
	}
}
