package peer_test

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/federation/peer"
)

// flood opens idle connections to addr from the address from, at a
// pace, until the stop it returns is called; it stops and closes them
// when the test ends.
func flood(t *testing.T, addr, from string, every time.Duration) (stop func()) {
	var mu sync.Mutex
	var conns []net.Conn
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		for {
			select {
			case <-quit:
				return
			case <-time.After(every):
			}
			if c, err := d.Dial("tcp", addr); err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done }) }
	t.Cleanup(func() {
		stop()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return stop
}

// A peer whose connections are shed because the listener is saturated
// is told so (a user_canceled alert): its error says the peer is
// saturated, not that a certificate was refused. Once the flood stops it
// connects. mesh-a's handshake takes a second through a delaying proxy,
// and a connection every 20 ms keeps the one handshake slot taken by a
// newer one.
func TestDialerIsToldTheListenerIsSaturated(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, func(c *peer.Config) {
		c.MaxHandshakes, c.MaxHandshakesPerSource = 1, 1
	})
	b.export([]string{"payments"}, "mesh-a")
	stop := flood(t, b.addr, "127.0.0.2", 20*time.Millisecond)
	proxy := delayed(t, b.addr, 250*time.Millisecond)
	a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), proxy)}, nil)

	var last string
	require.Eventually(t, func() bool {
		last = a.status("mesh-b").LastError
		return strings.Contains(last, "saturated")
	}, time.Minute, time.Millisecond)
	assert.Regexp(t, `^rpc error: code = Unavailable desc = peer "mesh-b" at 127\.0\.0\.1:\d+ (is saturated: its Hamlet listener has too many connections in their TLS handshake|closed the connection during the TLS handshake, before it checked this agent's certificate: its Hamlet listener may be saturated)`, last)
	assert.NotContains(t, last, "refused")
	assert.Positive(t, b.counter("meshfed_hamlet_handshakes_cut_total", map[string]string{"reason": "saturated"}))
	assert.Empty(t, b.manager.Refused(), "a shed connection is not a refused client")

	stop()
	a.eventuallyImports("mesh-b", "payments")
}

// Every refused handshake is counted, but the warning of a client that
// retries forever is sampled: of 200 plaintext clients, the first few
// each minute are logged.
func TestRefusalWarningsAreSampled(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	core, logs := observer.New(zapcore.WarnLevel)
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, func(c *peer.Config) { c.Log = zap.New(core) })
	start := time.Now()
	const clients = 200
	for range clients {
		c, err := net.Dial("tcp", b.addr)
		require.NoError(t, err)
		_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		require.NoError(t, err)
		_, _ = c.Read(make([]byte, 64))
		require.NoError(t, c.Close())
	}
	require.Eventually(t, func() bool {
		return b.counter("meshfed_hamlet_refused_connections_total", map[string]string{"peer": ""}) == clients
	}, time.Minute, 10*time.Millisecond)
	minutes := int(time.Since(start)/time.Minute) + 1
	logged := logs.FilterMessage("refused a Hamlet connection").Len()
	t.Logf("%d refusals, %d logged", clients, logged)
	assert.GreaterOrEqual(t, logged, peer.SampleFirst)
	assert.LessOrEqual(t, logged, peer.SampleFirst*minutes)
}
