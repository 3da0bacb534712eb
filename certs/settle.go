package certs

import "time"

// settler tells a rotation half done from a broken file. A rotation that
// writes a certificate and its key as two files (or a file in place)
// passes through a state that cannot be used: a key that does not match,
// a file cut short. That is an error only once it has lasted the settle
// time; until then the last good material stays, and nothing is logged
// above debug. An error is reported once for each change of the files,
// not again at every resync that finds it still there. Used by one
// goroutine, the watcher's.
type settler struct {
	settle time.Duration
	since  time.Time
	// reported is the error last reported since the files last changed.
	reported string
}

// changed notes that the files changed: what they hold now is news, and
// after an error was reported, a new rotation may have begun, which gets
// its own settle time.
func (s *settler) changed() {
	if s.reported != "" {
		s.since = time.Time{}
	}
	s.reported = ""
}

// report says whether err, an error now, is to be reported: it was not
// already, since the files last changed.
func (s *settler) report(err error) bool {
	if err.Error() == s.reported {
		return false
	}
	s.reported = err.Error()
	return true
}

// fail notes a change that cannot be used, at now, and returns how long
// until it is an error: zero or less when it is one already.
func (s *settler) fail(now time.Time) time.Duration {
	if s.since.IsZero() {
		s.since = now
	}
	return s.since.Add(s.settle).Sub(now)
}

// ok notes that what is on disk could be used.
func (s *settler) ok() { s.since, s.reported = time.Time{}, "" }
