package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultTimeout bounds the demo's waits together: a cold first run on a
// loaded machine (Envoy's first start, the race detector) takes a good
// part of a minute; only a broken setup takes this long.
const DefaultTimeout = 5 * time.Minute

// attemptTimeout bounds one try of a condition, so that a call that hangs
// is tried again rather than waited on until the deadline.
const attemptTimeout = 15 * time.Second

// retryEvery is the pause between two tries.
const retryEvery = 200 * time.Millisecond

// final marks an error that no retry mends, such as a process that exited.
type final struct{ error }

func (f final) Unwrap() error { return f.error }

// until tries check until it passes, returns a final error, or ctx (the
// demo's deadline) ends. Giving up, it names what it was waiting for, for
// how long, and the last try's error.
func until(ctx context.Context, what string, check func(context.Context) error) error {
	start := time.Now()
	for {
		attempt, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := check(attempt)
		cancel()
		if err == nil {
			return nil
		}
		if f := (final{}); errors.As(err, &f) {
			return fmt.Errorf("waiting for %s: %w", what, f.error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting for %s after %s (%v); the last try: %w", what, time.Since(start).Round(time.Second), context.Cause(ctx), err)
		case <-time.After(retryEvery):
		}
	}
}
