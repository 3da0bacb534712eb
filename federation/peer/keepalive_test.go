package peer_test

import (
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"google.golang.org/grpc/keepalive"

	"github.com/meshfed/meshfed/federation/peer"
)

// pinger is an HTTP/2 client that opens no stream and only pings, at the
// pace a test sets: faster than gRPC clients can (they ping at most every
// 10 s), so that a keepalive policy scaled down in time is tested quickly.
type pinger struct {
	t      *testing.T
	conn   *tls.Conn
	mu     sync.Mutex // serialises writes
	fr     *http2.Framer
	acks   chan [8]byte
	goaway chan *http2.GoAwayFrame
	closed chan struct{}
}

func dialPinger(t *testing.T, addr string, cfg *tls.Config) *pinger {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = conn.Write([]byte(http2.ClientPreface))
	require.NoError(t, err)
	p := &pinger{t: t, conn: conn, fr: http2.NewFramer(conn, conn), acks: make(chan [8]byte, 16),
		goaway: make(chan *http2.GoAwayFrame, 1), closed: make(chan struct{})}
	require.NoError(t, p.write(func(fr *http2.Framer) error { return fr.WriteSettings() }))
	go p.read()
	return p
}

func (p *pinger) write(f func(*http2.Framer) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f(p.fr)
}

func (p *pinger) read() {
	defer close(p.closed)
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if p.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() }) != nil {
					return
				}
			}
		case *http2.PingFrame:
			if f.IsAck() {
				p.acks <- f.Data
			}
		case *http2.GoAwayFrame:
			p.goaway <- f
			return
		}
	}
}

// ping pings n times, every interval, each time waiting for the answer.
// It returns the GOAWAY that ended the connection, or nil when every ping
// was answered and the connection is still up.
func (p *pinger) ping(n int, interval time.Duration) *http2.GoAwayFrame {
	for i := range n {
		if i > 0 {
			time.Sleep(interval)
		}
		data := [8]byte{byte(i)}
		if err := p.write(func(fr *http2.Framer) error { return fr.WritePing(false, data) }); err != nil {
			return p.wait()
		}
		select {
		case got := <-p.acks:
			require.Equal(p.t, data, got)
		case g := <-p.goaway:
			return g
		case <-p.closed:
			return p.wait()
		case <-time.After(10 * time.Second):
			p.t.Fatal("ping not answered within 10 s")
		}
	}
	return nil
}

func (p *pinger) wait() *http2.GoAwayFrame {
	select {
	case g := <-p.goaway:
		return g
	case <-time.After(10 * time.Second):
		p.t.Fatal("the connection ended without a GOAWAY")
		return nil
	}
}

// TestKeepaliveToleratesPingsWithoutStream: a peer that pings every 20 s
// without a stream (a known Hamlet client does, and does not reconnect
// after a GOAWAY) is never sent GOAWAY. Time is scaled down: the production
// policy and the 20 s interval are both divided by scale; the same pinger
// is sent GOAWAY by the old policy (30 s minimum, no pings without a
// stream) scaled the same way, so the test can tell.
func TestKeepaliveToleratesPingsWithoutStream(t *testing.T) {
	prod := peer.DefaultKeepaliveEnforcement()
	require.LessOrEqual(t, prod.MinTime, 10*time.Second, "gRPC clients ping every 10 s at most")
	require.True(t, prod.PermitWithoutStream)

	const scale = 40
	interval := 20 * time.Second / scale
	// The old policy sends GOAWAY on the third strike: the fourth ping.
	const pings = 6
	for _, tc := range []struct {
		name       string
		policy     keepalive.EnforcementPolicy
		wantGoAway bool
	}{
		{"production policy", keepalive.EnforcementPolicy{MinTime: prod.MinTime / scale, PermitWithoutStream: prod.PermitWithoutStream}, false},
		{"old policy", keepalive.EnforcementPolicy{MinTime: 30 * time.Second / scale}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t, "mesh-a", "mesh-b")
			b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, func(c *peer.Config) { c.KeepaliveEnforcement = tc.policy })
			x := dialPinger(t, b.addr, p.tls(t, "mesh-a").ClientConfig(tlsconfig.AuthorizeAny()))
			g := x.ping(pings, interval)
			if !tc.wantGoAway {
				require.Nil(t, g, "the agent sent GOAWAY")
				return
			}
			require.NotNil(t, g)
			require.Equal(t, http2.ErrCodeEnhanceYourCalm, g.ErrCode)
			require.Equal(t, "too_many_pings", string(g.DebugData()))
		})
	}
}
