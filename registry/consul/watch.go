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
	// maxWait is how long Consul may hold a blocking query. Consul 1.8
	// holds one whose index is ahead of its own (it restarted without its
	// data) for the whole wait, jitter added: the wait bounds how late
	// that is seen, and every query starts over. Each wait that ends
	// without change costs an answer: the list of services (some 60 KB
	// for 2,000 services with a tag), and an empty list of checks.
	maxWait = 5 * time.Second
	// minGap spaces the queries of one watch, as Consul asks of blocking
	// clients: a server (or proxy) that answers at once every time cannot
	// turn a watch into a busy loop.
	minGap = 50 * time.Millisecond
	// checksGap spaces the queries of the checks: each change costs
	// every check of the datacenter (some 410 bytes each), so a burst of
	// changes is read a few times a second. A lone change is read at once.
	checksGap = 250 * time.Millisecond
)

// newBackoff is the retry schedule of a failing query: exponential with
// jitter, so that many retries do not come in step, and never giving up.
func newBackoff() backoff.BackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(250*time.Millisecond),
		backoff.WithMaxInterval(30*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
}

// indexBackwards is an answer whose index is lower than one before it:
// Consul lost its data (or another Consul answers), and every index held
// is meaningless.
type indexBackwards struct {
	query    string
	from, to uint64
}

func (e indexBackwards) Error() string {
	return fmt.Sprintf("consul query %s: the index went back from %d to %d", e.query, e.from, e.to)
}

// query is a blocking query: when its answer's index moved, follow calls
// the apply it returned, which may read more.
type query func(*api.QueryOptions) (apply func(context.Context) error, meta *api.QueryMeta, err error)

// follow runs q from index until ctx is done, its queries gap apart at
// least, and applies each answer whose index moved past the last one
// applied. Failures of either are reported (and their end reported as
// nil) and retried with a backoff; apply's failure leaves the index where
// it was, so that it is tried again. It returns the indexBackwards it
// meets, nil when ctx is done.
func follow(ctx context.Context, log *zap.Logger, what string, index uint64, gap time.Duration, q query, report func(error) bool) error {
	b := newBackoff()
	failing := false
	seen := index // the highest index answered
	var last time.Time
	for {
		if !sleep(ctx, gap-time.Since(last)) {
			return nil
		}
		last = time.Now()
		opts := &api.QueryOptions{WaitIndex: index, WaitTime: maxWait}
		if failing {
			// Consul may have come back without its data: an answer at
			// once tells, where a wait on the old index would be held.
			opts.WaitIndex = 0
		}
		apply, meta, err := q(opts.WithContext(ctx))
		if ctx.Err() != nil {
			return nil
		}
		if err == nil && meta.LastIndex < seen {
			return indexBackwards{query: what, from: seen, to: meta.LastIndex}
		}
		if err == nil {
			seen = meta.LastIndex
			if meta.LastIndex != index {
				err = apply(ctx)
				if ctx.Err() != nil {
					return nil
				}
			}
		}
		if err != nil {
			d := b.NextBackOff()
			// What Consul answered may be in the error, as long as
			// the answer.
			err = untrusted.Error(err)
			fresh := report(fmt.Errorf("consul query %s: %w", what, err))
			logAt(log, fresh)("consul query failed; the last result stays", zap.String("query", what), zap.Duration("retryIn", d), zap.Error(err))
			failing = true
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		if failing {
			log.Info("consul query works again", zap.String("query", what))
			report(nil)
			failing = false
		}
		b.Reset()
		index = nextIndex(index, meta.LastIndex)
	}
}

// logAt is Warn for a failure met the first time, Debug for its repeats:
// thousands of reads may fail together, each retried.
func logAt(log *zap.Logger, fresh bool) func(string, ...zap.Field) {
	if fresh {
		return log.Warn
	}
	return log.Debug
}

// nextIndex is the index to wait on after an answer, by Consul's rules
// for blocking clients: one that went backwards starts over from 0, and
// a 0 index, which never blocks, becomes 1.
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
