package session

import "time"

// clock is the time the grace period is measured in; tests replace it to
// step through a grace period without waiting for one.
type clock struct {
	now       func() time.Time
	afterFunc func(time.Duration, func()) timer
}

type timer interface {
	Reset(time.Duration) bool
	Stop() bool
}

var realClock = clock{
	now:       time.Now,
	afterFunc: func(d time.Duration, f func()) timer { return time.AfterFunc(d, f) },
}
