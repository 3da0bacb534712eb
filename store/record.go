package store

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Record is one import as stored.
type Record struct {
	Peer       string
	ResourceID string
	// Service is the marshaled typespb.FederatedService exactly as the peer
	// sent it: stored raw so that a restart re-validates it under the policy
	// then in force, and so that fields this binary does not know survive.
	Service []byte
	// StaleSince is when the stream that carried the record dropped; zero
	// while it is fresh.
	StaleSince time.Time
}

// The record value is a small envelope rather than protobuf or JSON: it is
// read 100,000 times on start and must cost no more than a copy.
//
//	byte 0      envelope version (1)
//	byte 1      header length h (8 in version 1)
//	bytes 2..   h header bytes: stale time, int64 big-endian Unix nanoseconds,
//	            0 when fresh; later versions may append fields here
//	then        the service bytes
//
// A newer writer that adds header fields raises h and keeps the version, so
// an older reader skips what it does not know; the version changes only for
// a change an older reader must not misread, and an unknown version is an
// error rather than a guess.
const (
	envelopeVersion = 1
	headerLen       = 8
	prefixLen       = 2 + headerLen
)

func encodeRecord(stale int64, service []byte) []byte {
	b := make([]byte, prefixLen+len(service))
	b[0], b[1] = envelopeVersion, headerLen
	binary.BigEndian.PutUint64(b[2:], uint64(stale))
	copy(b[prefixLen:], service)
	return b
}

// decodeRecord returns the stale nanoseconds and the service bytes, which
// alias v.
func decodeRecord(v []byte) (stale int64, service []byte, err error) {
	if len(v) < 2 {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(v))
	}
	if v[0] != envelopeVersion {
		return 0, nil, fmt.Errorf("%w: envelope version %d, this binary reads only %d", ErrCorrupt, v[0], envelopeVersion)
	}
	h := int(v[1])
	if h < headerLen || len(v) < 2+h {
		return 0, nil, fmt.Errorf("%w: header of %d bytes in a value of %d", ErrCorrupt, h, len(v))
	}
	return int64(binary.BigEndian.Uint64(v[2:])), v[2+h:], nil
}

// staleNanos is the stored form of t. The zero time is stored as 0, which is
// why the one instant that would also be 0, and the instants UnixNano cannot
// represent, are refused.
func staleNanos(t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, nil
	}
	n := t.UnixNano()
	if n == 0 || !time.Unix(0, n).Equal(t) {
		return 0, ErrStaleTime
	}
	return n, nil
}

func staleTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
