// Package handshake bounds a listener's connections that have not finished
// their TLS handshake: the only ones anybody can open, without a
// certificate.
package handshake

import (
	"container/list"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
)

// Why a connection was cut before it finished its TLS handshake, as the
// reason label of the listeners' handshakes_cut_total metrics.
const (
	// CutSaturated: the listener had its most connections in their
	// handshake, and this was the oldest.
	CutSaturated = "saturated"
	// CutSourceSaturated: its source address had its most connections in
	// their handshake, and this was the oldest.
	CutSourceSaturated = "source_saturated"
	// CutTimeout: it did not finish within the listener's handshake
	// timeout.
	CutTimeout = "timeout"
)

// CutReasons lists every reason, for metrics that show each from the start.
var CutReasons = []string{CutSaturated, CutSourceSaturated, CutTimeout}

// userCanceled is a TLS alert record, fatal user_canceled: what a shed
// connection is told when nothing of the handshake has been sent to it yet.
// RFC 8446 has it for "canceling the handshake for some reason unrelated
// to a protocol failure", and Go's TLS server never sends it otherwise, so
// the dialer can tell a saturated listener from a refused certificate.
var userCanceled = []byte{21, 3, 3, 0, 2, 2, 90}

// Gate bounds a listener's connections that have not finished their TLS
// handshake, in all and by source. Over a bound the oldest such connection
// is shed rather than the new one refused: a flood then displaces its own
// connections, while a client's, which finishes in a few round trips, is
// the newest and stays. Authenticated connections are not counted.
type Gate struct {
	max, perSource int

	mu       sync.Mutex
	all      list.List // of *pending, oldest first
	bySource map[netip.Prefix]*list.List

	cut map[string]*atomic.Int64
}

// NewGate returns a gate that lets max connections be in their handshake
// at once, perSource of them from one IPv4 address or IPv6 /64.
func NewGate(max, perSource int) *Gate {
	h := &Gate{max: max, perSource: perSource, bySource: map[netip.Prefix]*list.List{}, cut: map[string]*atomic.Int64{}}
	for _, r := range CutReasons {
		h.cut[r] = new(atomic.Int64)
	}
	return h
}

// The states of a pending connection: whichever of done and shed comes first
// decides.
const (
	inHandshake int32 = iota
	settled           // the handshake is over, whatever its outcome
	shedding          // the listener cut it
)

// pending is a connection in its TLS handshake, and after it the
// connection under TLS.
type pending struct {
	net.Conn
	source netip.Prefix
	// inAll and inSource are its elements in the Gate's lists, nil once
	// removed; guarded by Gate.mu.
	inAll, inSource *list.Element

	// mu serialises the handshake's writes with the alert of a shed;
	// wrote says whether any byte went out.
	mu    sync.Mutex
	wrote bool
	state atomic.Int32
	// reason is why the listener cut the connection, empty when it did
	// not.
	reason atomic.Pointer[string]
}

func (c *pending) Write(b []byte) (int, error) {
	if c.state.Load() == settled {
		return c.Conn.Write(b)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wrote = true
	return c.Conn.Write(b)
}

// cutReason is why the listener cut c, or "".
func (c *pending) cutReason() string {
	if r := c.reason.Load(); r != nil && c.state.Load() == shedding {
		return *r
	}
	return ""
}

// shed closes c, telling the client why when nothing else was sent to it
// yet, unless its handshake has just ended. It never waits on the
// handshake: the lock is only tried.
func (c *pending) shed(reason string) {
	c.reason.Store(&reason)
	if !c.state.CompareAndSwap(inHandshake, shedding) {
		return
	}
	if c.mu.TryLock() {
		if !c.wrote {
			c.wrote = true
			// A new connection's send buffer is empty: this does not
			// block.
			_, _ = c.Conn.Write(userCanceled)
		}
		c.mu.Unlock()
	}
	_ = c.Conn.Close()
}

// admit counts raw as in its handshake, first shedding the oldest
// connection of its source, or of all, that it would put over a bound. The
// handshake must run on the connection it returns.
func (h *Gate) admit(raw net.Conn) *pending {
	c := &pending{Conn: raw, source: SourceOf(raw.RemoteAddr())}
	var shed []*pending
	var reasons []string
	h.mu.Lock()
	if src := h.bySource[c.source]; src != nil && src.Len() >= h.perSource {
		old := src.Front().Value.(*pending)
		h.removeLocked(old)
		shed, reasons = append(shed, old), append(reasons, CutSourceSaturated)
	}
	if h.all.Len() >= h.max {
		old := h.all.Front().Value.(*pending)
		h.removeLocked(old)
		shed, reasons = append(shed, old), append(reasons, CutSaturated)
	}
	src := h.bySource[c.source]
	if src == nil {
		src = list.New()
		h.bySource[c.source] = src
	}
	c.inAll, c.inSource = h.all.PushBack(c), src.PushBack(c)
	h.mu.Unlock()
	for i, old := range shed {
		h.cut[reasons[i]].Add(1)
		old.shed(reasons[i])
	}
	return c
}

// done ends c's handshake, whatever its outcome. It reports false when
// the listener cut c first: a handshake that succeeded then must not be
// used.
func (h *Gate) done(c *pending) bool {
	ok := c.state.CompareAndSwap(inHandshake, settled)
	h.mu.Lock()
	h.removeLocked(c)
	h.mu.Unlock()
	return ok
}

func (h *Gate) removeLocked(c *pending) {
	if c.inAll == nil {
		return
	}
	h.all.Remove(c.inAll)
	src := h.bySource[c.source]
	src.Remove(c.inSource)
	if src.Len() == 0 {
		delete(h.bySource, c.source)
	}
	c.inAll, c.inSource = nil, nil
}

// Handshake runs a server's TLS handshake on raw, counted as in its
// handshake until it ends. cut is why the gate closed the connection, if
// it did: shed for a newer one, or not done before the deadline the
// caller set on raw (CutTimeout, counted). A handshake that succeeded as
// it was shed is closed and fails.
func (h *Gate) Handshake(raw net.Conn, handshake func(net.Conn) (net.Conn, credentials.AuthInfo, error)) (conn net.Conn, info credentials.AuthInfo, cut string, err error) {
	c := h.admit(raw)
	conn, info, err = handshake(c)
	if !h.done(c) && err == nil {
		_ = conn.Close()
		conn, info, err = nil, nil, net.ErrClosed
	}
	switch {
	case err == nil:
	case c.cutReason() != "":
		cut = c.cutReason()
	case errors.Is(err, os.ErrDeadlineExceeded):
		h.timedOut()
		cut = CutTimeout
	}
	return conn, info, cut, err
}

// InProgress is how many connections are in their handshake now.
func (h *Gate) InProgress() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.all.Len()
}

// timedOut counts a connection that did not finish in time.
func (h *Gate) timedOut() { h.cut[CutTimeout].Add(1) }

// Cuts is how many connections were cut for reason (one of CutReasons).
func (h *Gate) Cuts(reason string) int64 { return h.cut[reason].Load() }

// SourceOf is the bucket of a client address: an IPv4 address, or an
// IPv6 /64, which is what one subscriber is usually given. Addresses that
// do not parse share one bucket.
func SourceOf(a net.Addr) netip.Prefix {
	var ap netip.AddrPort
	if t, ok := a.(*net.TCPAddr); ok {
		ap = t.AddrPort()
	} else if p, err := netip.ParseAddrPort(a.String()); err == nil {
		ap = p
	}
	ip := ap.Addr().Unmap()
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}
