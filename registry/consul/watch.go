package consul

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/untrusted"
)

const (
	// waitTime is how long Consul may hold a blocking query; it adds its
	// own jitter. Long, as a return without change costs a request.
	waitTime = 5 * time.Minute
	// minGap spaces the queries of one watch, as Consul asks of blocking
	// clients: a server (or proxy) that answers at once every time cannot
	// turn a watch into a busy loop.
	minGap = 50 * time.Millisecond
)

// newBackoff is the retry schedule of a failing query: exponential with
// jitter, so that many watches do not retry in step, and never giving up.
func newBackoff() backoff.BackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(250*time.Millisecond),
		backoff.WithMaxInterval(30*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
}

// watch runs a blocking query from index until ctx is done, calling apply
// with every result whose index moved. Errors are logged, reported (and
// their end reported as nil) and retried.
func watch[T any](ctx context.Context, log *zap.Logger, what string, index uint64,
	query func(*api.QueryOptions) (T, *api.QueryMeta, error), apply func(T), report func(error)) {
	b := newBackoff()
	failing := false
	var last time.Time
	for {
		if !sleep(ctx, minGap-time.Since(last)) {
			return
		}
		last = time.Now()
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: waitTime}).WithContext(ctx)
		v, meta, err := query(q)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d := b.NextBackOff()
			// What Consul answered may be in the error, as long as
			// the answer.
			err = untrusted.Error(err)
			log.Warn("consul query failed; the last result stays", zap.String("query", what), zap.Duration("retryIn", d), zap.Error(err))
			report(fmt.Errorf("consul query %s: %w", what, err))
			failing = true
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		if failing {
			log.Info("consul query works again", zap.String("query", what))
			report(nil)
			failing = false
		}
		b.Reset()
		if meta.LastIndex != index {
			apply(v)
		}
		index = nextIndex(index, meta.LastIndex)
	}
}

// nextIndex is the index to wait on after a result, by Consul's rules for
// blocking clients: an index that went backwards (a restored snapshot, a
// rebuilt cluster) starts over from 0, and a 0 index, which never blocks,
// becomes 1.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	}
	return got
}

// sleep waits d, or less if ctx is done first; it reports whether ctx is
// still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
