package handshake

import (
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// pair is both ends of a loopback TCP connection, the client's from the
// address from.
func pair(t *testing.T, lis net.Listener, from string) (client, server net.Conn) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	client, err := d.Dial("tcp", lis.Addr().String())
	require.NoError(t, err)
	server, err = lis.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// The oldest connection in its handshake is shed: of its own source when
// that source is at its bound, else of all. One that was sent nothing yet
// is sent a user_canceled alert first; one that was, is only closed. A
// connection done with its handshake is no longer counted, nor closed by
// a shed that comes after.
func TestGateShedsTheOldest(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = lis.Close() })
	h := NewGate(3, 2)

	type conn struct {
		client net.Conn
		hc     *pending
	}
	admit := func(from string) conn {
		c, s := pair(t, lis, from)
		return conn{c, h.admit(s)}
	}
	a1 := admit("127.0.0.2")
	_, err = a1.hc.Write([]byte("hello")) // a1's handshake has begun
	require.NoError(t, err)
	a2 := admit("127.0.0.2")
	b1 := admit("127.0.0.3")
	require.Equal(t, 3, h.InProgress())

	a3 := admit("127.0.0.2") // 127.0.0.2 is at 2: a1 goes
	require.Equal(t, CutSourceSaturated, a1.hc.cutReason())
	got, err := io.ReadAll(a1.client)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got), "no alert after the handshake began")

	b2 := admit("127.0.0.3") // 3 in all: the oldest, a2, goes
	require.Equal(t, CutSaturated, a2.hc.cutReason())
	got, err = io.ReadAll(a2.client)
	require.NoError(t, err)
	require.Equal(t, userCanceled, got)
	require.Equal(t, 3, h.InProgress())

	require.True(t, h.done(b1.hc))
	require.Equal(t, 2, h.InProgress())
	require.False(t, h.done(a2.hc), "a2 was cut first: its handshake must not be used")
	// Once done, a connection is the peer's: a shed that comes late (its
	// admission had already picked it) leaves it open.
	b1.hc.shed(CutSaturated)
	require.Empty(t, b1.hc.cutReason())
	_, err = b1.hc.Write([]byte("still open"))
	require.NoError(t, err)
	admit("127.0.0.4")
	require.Empty(t, a3.hc.cutReason(), "room was made by a finished handshake")
	require.Empty(t, b2.hc.cutReason())
	require.Equal(t, int64(1), h.Cuts(CutSourceSaturated))
	require.Equal(t, int64(1), h.Cuts(CutSaturated))
}

// An IPv6 client is counted by its /64, an IPv4 one (mapped or not) by
// its address.
func TestSourceOf(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:40000":              "192.0.2.7/32",
		"[::ffff:192.0.2.7]:40000":     "192.0.2.7/32",
		"[2001:db8:1:2:3:4:5:6]:40000": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:40000": "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:40000":      "2001:db8:1:3::/64",
	} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		require.NoError(t, err)
		require.Equal(t, netip.MustParsePrefix(want), SourceOf(tcp), addr)
	}
	require.Equal(t, netip.Prefix{}, SourceOf(&net.UnixAddr{Name: "x"}))
}
