// Package retry is the backoff of the agent's retry loops (redialing a
// peer, fetching a peer's trust bundle): exponential, with jitter, and
// never outside its floor and its cap, so that a cap an operator sets is a
// promise about the longest wait.
package retry

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// jitter is the randomization of each wait: a wait is drawn from
// [1-jitter, 1+jitter] times the current interval. Peers that failed
// together (a restarted agent's) then come back spread over that range
// rather than at one instant.
const jitter = 0.5

// Backoff gives the waits between attempts. The n-th wait after a Reset
// (from 0) lies in [floor·2ⁿ, 3·floor·2ⁿ], and always in [floor, cap]:
// the interval doubles until its randomized range reaches the cap, and
// stays there, each wait then in [cap/3, cap]. Not safe for concurrent
// use.
type Backoff struct {
	floor, cap time.Duration
	b          backoff.ExponentialBackOff
}

// New is a Backoff from floor to cap; a cap below the floor is the floor.
func New(floor, cap time.Duration) *Backoff {
	r := &Backoff{}
	r.set(floor, cap)
	return r
}

// set configures the waits and starts them over.
func (r *Backoff) set(floor, cap time.Duration) {
	r.floor, r.cap = floor, max(cap, floor)
	// The randomized range of an interval i is [i/2, 3i/2]: an interval
	// of 2·floor keeps the first wait at or above the floor, one of
	// 2/3·cap keeps every wait at or below the cap.
	r.b = backoff.ExponentialBackOff{
		InitialInterval:     2 * r.floor,
		RandomizationFactor: jitter,
		Multiplier:          2,
		MaxInterval:         time.Duration(float64(r.cap) / (1 + jitter)),
		Clock:               backoff.SystemClock,
		Stop:                backoff.Stop,
	}
	r.b.Reset()
}

// SetCap changes the cap; the waits start over from the floor.
func (r *Backoff) SetCap(cap time.Duration) {
	if max(cap, r.floor) != r.cap {
		r.set(r.floor, cap)
	}
}

// Next is the wait before the next attempt.
func (r *Backoff) Next() time.Duration {
	return min(max(r.b.NextBackOff(), r.floor), r.cap)
}

// Reset starts the waits over from the floor, after an attempt that
// succeeded.
func (r *Backoff) Reset() { r.b.Reset() }

// Cap is the longest wait.
func (r *Backoff) Cap() time.Duration { return r.cap }
