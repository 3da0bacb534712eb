package xds

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/credentials"
)

// waitFor bounds waits for what the server does in the background; it is
// a deadlock guard, not a timing.
const waitFor = 10 * time.Second

// rawFrom opens a TCP connection to addr from the loopback address from,
// and sends nothing: a client that never starts its TLS handshake.
func rawFrom(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// handshakeCuts checks the xDS listener's cut connections, by reason, as
// its metrics show them.
func handshakeCuts(t *testing.T, e *mtlsEnv, saturated, sourceSaturated, timeout int) {
	t.Helper()
	want := `# HELP meshfed_xds_handshakes_cut_total Connections the xDS listener closed before they finished their TLS handshake: shed as the oldest when xds.maxHandshakes (saturated) or maxHandshakesPerSource (source_saturated) were in their handshake, or not done within xds.handshakeTimeout (timeout).
# TYPE meshfed_xds_handshakes_cut_total counter
meshfed_xds_handshakes_cut_total{reason="saturated"} ` + strconv.Itoa(saturated) + `
meshfed_xds_handshakes_cut_total{reason="source_saturated"} ` + strconv.Itoa(sourceSaturated) + `
meshfed_xds_handshakes_cut_total{reason="timeout"} ` + strconv.Itoa(timeout) + `
`
	require.NoError(t, testutil.GatherAndCompare(e.server.cfg.Registerer.(prometheus.Gatherer), strings.NewReader(want), "meshfed_xds_handshakes_cut_total"))
}

// Connections that never finish their TLS handshake cannot crowd the
// gateways out: over MaxHandshakesPerSource of one address, or
// MaxHandshakes in all, the oldest is shed (with a user_canceled alert,
// as nothing was sent to it yet), and a gateway that then connects gets
// its configuration.
func TestHandshakesInProgressAreBounded(t *testing.T) {
	e := serveMTLS(t, Config{MaxHandshakes: 3, MaxHandshakesPerSource: 2, HandshakeTimeout: time.Minute})
	inProgress := e.server.gate.InProgress
	// gRPC hands each accepted connection to a goroutine of its own:
	// one at a time, so that the gate sees them in this order.
	stalled := func(from string, want int) net.Conn {
		c := rawFrom(t, e.addr, from)
		require.Eventually(t, func() bool { return inProgress() == want }, waitFor, time.Millisecond)
		return c
	}
	a1 := stalled("127.0.0.2", 1)
	stalled("127.0.0.2", 2)

	rawFrom(t, e.addr, "127.0.0.2") // 127.0.0.2 is at 2: a1 goes
	require.NoError(t, a1.SetReadDeadline(time.Now().Add(waitFor)))
	got, err := io.ReadAll(a1)
	require.NoError(t, err)
	require.Equal(t, []byte{21, 3, 3, 0, 2, 2, 90}, got, "a TLS user_canceled alert, then the end")
	stalled("127.0.0.3", 3)
	handshakeCuts(t, e, 0, 1, 0)
	require.NoError(t, testutil.GatherAndCompare(e.server.cfg.Registerer.(prometheus.Gatherer), strings.NewReader(`# HELP meshfed_xds_handshakes_in_progress Connections to the xDS listener (TCP, mutual TLS) that have not finished their TLS handshake.
# TYPE meshfed_xds_handshakes_in_progress gauge
meshfed_xds_handshakes_in_progress 3
`), "meshfed_xds_handshakes_in_progress"))

	// The gateway's handshake is the newest: the oldest stalled one goes.
	names, err := secretsOf(t, e.addr, credentials.NewTLS(e.clientTLS.Clone()), "egress-delta")
	require.NoError(t, err)
	require.NotEmpty(t, names)
	handshakeCuts(t, e, 1, 1, 0)
}

// A connection that does not finish its handshake within HandshakeTimeout
// is closed, and counted.
func TestHandshakeTimesOut(t *testing.T) {
	e := serveMTLS(t, Config{HandshakeTimeout: 200 * time.Millisecond})
	c := rawFrom(t, e.addr, "127.0.0.2")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err := io.ReadAll(c)
	require.NoError(t, err, "closed by the server")
	require.Eventually(t, func() bool { return e.server.gate.Cuts("timeout") == 1 }, waitFor, 5*time.Millisecond)
	handshakeCuts(t, e, 0, 0, 1)
	require.Zero(t, e.server.gate.InProgress())
}
