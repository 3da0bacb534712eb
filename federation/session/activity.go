package session

import (
	"sync/atomic"
	"time"
)

// Activity is what the sessions with one peer did last, for the status
// API: it outlives each stream. A nil *Activity records nothing. It is
// written on every frame, so it holds atomics rather than a lock.
type Activity struct {
	lastSent, lastRecv atomic.Int64 // unix nanoseconds, 0 for never
	caps               atomic.Pointer[Capabilities]
}

func (a *Activity) sentFrame() {
	if a != nil {
		a.lastSent.Store(time.Now().UnixNano())
	}
}

func (a *Activity) received() {
	if a != nil {
		a.lastRecv.Store(time.Now().UnixNano())
	}
}

func (a *Activity) negotiated(c Capabilities) {
	if a != nil {
		a.caps.Store(&c)
	}
}

// Ended forgets the negotiation of a stream that has ended.
func (a *Activity) Ended() {
	if a != nil {
		a.caps.Store(nil)
	}
}

// LastSent is when this agent last sent the peer a frame; zero for never.
func (a *Activity) LastSent() time.Time { return unixTime(a.lastSent.Load()) }

// LastReceived is when the peer last sent this agent a frame; zero for
// never.
func (a *Activity) LastReceived() time.Time { return unixTime(a.lastRecv.Load()) }

// Negotiated is what the current stream's two sides agreed on; false when
// no stream is up or the peer's advertisement has not been read yet.
func (a *Activity) Negotiated() (Capabilities, bool) {
	c := a.caps.Load()
	if c == nil {
		return Capabilities{}, false
	}
	return *c, true
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
