package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// requestLoop sends requests one after the other at a steady pace, as a
// workload does, and counts those that failed: what an operator's change
// costs the traffic.
type requestLoop struct {
	name string
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	ok, failed int
	lastErr    error
}

// loopPace is the time between the start of two requests: 20 a second
// at most, the rate the issue measured with.
const loopPace = 50 * time.Millisecond

// startLoop calls call every loopPace until the test ends or stop.
func startLoop(t *testing.T, name string, call func(ctx context.Context) error) *requestLoop {
	t.Helper()
	l := &requestLoop{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(loopPace)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := call(ctx)
			cancel()
			l.mu.Lock()
			if err != nil {
				l.failed++
				l.lastErr = err
			} else {
				l.ok++
			}
			l.mu.Unlock()
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(l.end)
	return l
}

// counts are the requests that succeeded and failed so far.
func (l *requestLoop) counts() (ok, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.failed
}

// since are the counts since an earlier counts.
func (l *requestLoop) since(ok0, failed0 int) (ok, failed int) {
	ok, failed = l.counts()
	return ok - ok0, failed - failed0
}

// waitOK waits until n more requests succeeded than had at the call.
func (l *requestLoop) waitOK(t *testing.T, n int) {
	t.Helper()
	ok0, _ := l.counts()
	eventually(t, fmt.Sprintf("%s: %d more requests succeed", l.name, n), func(context.Context) error {
		if ok, _ := l.counts(); ok < ok0+n {
			return fmt.Errorf("%d of %d succeeded; last error: %v", ok-ok0, n, l.err())
		}
		return nil
	})
}

func (l *requestLoop) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// end stops the loop and waits for its last request.
func (l *requestLoop) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}
