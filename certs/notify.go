package certs

import "sync"

// notifier fans a change signal out to subscribers. Each subscriber channel
// has a buffer of one and sends never block, so a burst of rotations
// coalesces into one pending wake-up and a slow reader never stalls a reload.
type notifier struct {
	mu   sync.Mutex
	next int
	subs map[int]chan struct{}
}

// Subscribe returns a channel that receives a value after each change, and a
// cancel function that stops delivery. The channel is never closed, so a
// reader selecting on it together with a context needs no extra check.
func (n *notifier) Subscribe() (<-chan struct{}, func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs == nil {
		n.subs = make(map[int]chan struct{})
	}
	id := n.next
	n.next++
	ch := make(chan struct{}, 1)
	n.subs[id] = ch
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			n.mu.Lock()
			delete(n.subs, id)
			n.mu.Unlock()
		})
	}
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
