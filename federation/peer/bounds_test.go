package peer_test

import (
	"bytes"
	"crypto/tls"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"

	"github.com/meshfed/meshfed/federation/peer"
)

// rawPeer speaks HTTP/2 itself, with the certificate of a configured peer,
// to do what a well-behaved gRPC client would not: ignore the stream limit,
// send a header block of any size.
type rawPeer struct {
	t    *testing.T
	conn *tls.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	// settings is the server's first SETTINGS frame.
	settings *http2.SettingsFrame
}

func dialRawPeer(t *testing.T, addr string, cfg *tls.Config) *rawPeer {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c := &rawPeer{t: t, conn: conn, fr: http2.NewFramer(conn, conn)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	_, err = conn.Write([]byte(http2.ClientPreface))
	require.NoError(t, err)
	require.NoError(t, c.fr.WriteSettings())
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Minute)))
	for c.settings == nil {
		f, err := c.fr.ReadFrame()
		require.NoError(t, err)
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			c.settings = s
			require.NoError(t, c.fr.WriteSettingsAck())
		}
	}
	return c
}

// setting is the value the server announced for id.
func (c *rawPeer) setting(id http2.SettingID) uint32 {
	v, ok := c.settings.Value(id)
	require.True(c.t, ok, "the server announces %s", id)
	return v
}

// requestHeaders is the header block that opens EstablishStream.
func (c *rawPeer) requestHeaders() []byte {
	c.hbuf.Reset()
	for _, h := range [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":authority", "mesh-b"},
		{":path", "/federation.resourcediscovery.v1alpha2.DiscoveryService/EstablishStream"},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		require.NoError(c.t, c.enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]}))
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// open starts EstablishStream on stream id without sending a message.
func (c *rawPeer) open(id uint32) {
	require.NoError(c.t, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.requestHeaders(), EndHeaders: true}))
}

// ends reads the server's frames until it has refused or ended every
// stream of ids (or the connection ends), and returns how each ended: a
// refusal's HTTP/2 code, or the gRPC status of its trailers.
func (c *rawPeer) ends(ids []uint32) map[uint32]string {
	out := map[uint32]string{}
	for len(out) < len(ids) {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return out
		}
		if _, ended := out[f.Header().StreamID]; ended {
			// gRPC resets a stream it has ended before the client
			// half-closed it (NO_ERROR).
			continue
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			out[f.StreamID] = f.ErrCode.String()
		case *http2.MetaHeadersFrame:
			if code := f.PseudoValue("status"); code == "" && f.StreamEnded() {
				n, err := strconv.Atoi(headerValue(f, "grpc-status"))
				require.NoError(c.t, err)
				out[f.StreamID] = codes.Code(n).String() + ": " + headerValue(f, "grpc-message")
			}
		}
	}
	return out
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, h := range f.RegularFields() {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// A peer gets MaxStreamsPerConnection streams on a connection: of 1,000
// streams opened over 10 connections (100 each, ignoring the limit the
// server announces), 40 are taken and 960 refused, and the 40 end with
// DeadlineExceeded once HandshakeTimeout has passed without an opening
// request. The agent's goroutines, read from the process, follow the
// streams it took, not those opened.
func TestStreamsOfAPeerAreBounded(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, func(c *peer.Config) { c.HandshakeTimeout = time.Second })
	cfg := p.tls(t, "mesh-a").ClientConfig(tlsconfig.AuthorizeAny())

	const conns, perConn = 10, 100
	runtime.GC()
	goroutines0 := runtime.NumGoroutine()
	var peers []*rawPeer
	var ids []uint32
	for range conns {
		c := dialRawPeer(t, b.addr, cfg)
		require.Equal(t, uint32(peer.MaxStreamsPerConnection), c.setting(http2.SettingMaxConcurrentStreams))
		peers = append(peers, c)
	}
	for i := range perConn {
		ids = append(ids, uint32(2*i+1))
	}
	for _, c := range peers {
		for _, id := range ids {
			c.open(id)
		}
	}
	taken := 0
	for _, c := range peers {
		ends := c.ends(ids)
		require.Len(t, ends, perConn)
		refused := 0
		for id, end := range ends {
			switch end {
			case "REFUSED_STREAM":
				refused++
				require.Greater(t, id, uint32(2*peer.MaxStreamsPerConnection-1))
			default:
				taken++
				require.Equal(t, "DeadlineExceeded: no opening request within 1s (federation.handshakeTimeout) of the stream's start", end, "stream %d", id)
			}
		}
		require.Equal(t, perConn-peer.MaxStreamsPerConnection, refused)
	}
	require.Equal(t, conns*peer.MaxStreamsPerConnection, taken)
	assert.Equal(t, peer.Waiting, b.status("mesh-a").State)
	// Each connection holds a few goroutines (reader, writer, keepalive);
	// 1,000 streams held would be thousands.
	require.Eventually(t, func() bool { return runtime.NumGoroutine()-goroutines0 <= 4*conns }, 10*time.Second, 10*time.Millisecond,
		"the goroutines follow the connections, not the streams")
	t.Logf("%d streams opened over %d connections: %d taken, %d refused; the process holds %+d goroutines",
		conns*perConn, conns, taken, conns*perConn-taken, runtime.NumGoroutine()-goroutines0)
}

// A stream whose header block is 10 MB (a HEADERS frame and CONTINUATION
// frames sent from one reused buffer) is refused before the block is
// read: the server closes the connection at the first frame, the stream
// never opens, and 20 such requests cost the process a few MB of
// allocation, read from the process, where decoding them would take
// 200 MB and more.
func TestHugeHeaderBlockIsRefused(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
	cfg := p.tls(t, "mesh-a").ClientConfig(tlsconfig.AuthorizeAny())

	const size = 10 << 20
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 20 {
		c := dialRawPeer(t, b.addr, cfg)
		require.Equal(t, uint32(peer.MaxHeaderListBytes), c.setting(http2.SettingMaxHeaderListSize))
		_, frames := c.sendHugeHeader(size)
		require.Empty(t, frames, "nothing answered the stream")
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("20 header blocks of %d MB: %.1f MB allocated in the process", size>>20, float64(allocated)/1e6)
	require.Less(t, allocated, uint64(16<<20))
	assert.Equal(t, peer.Waiting, b.status("mesh-a").State, "no stream was opened")
}

// sendHugeHeader opens stream 1 with a header block that carries one
// field of size bytes, literal and not indexed, until the connection
// fails or the block is sent; then it reads until the connection ends. It
// returns how much of the field was sent, and the frames the server sent
// on stream 1.
func (c *rawPeer) sendHugeHeader(size int) (sent int, frames []http2.Frame) {
	block := c.requestHeaders()
	// A literal field without indexing, new name: 0x00, the name, the
	// value's length as a 7-bit prefixed integer, then the value.
	block = append(block, 0, 5)
	block = append(block, "x-big"...)
	block = append(block, hpackInt(size)...)
	chunk := bytes.Repeat([]byte{'a'}, 16<<10)
	first := append(block, chunk[:16<<10-len(block)]...)
	sent = len(first) - len(block)
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first})
	for err == nil && sent < size {
		n := min(len(chunk), size-sent)
		if err = c.fr.WriteContinuation(1, sent+n == size, chunk[:n]); err == nil {
			sent += n
		}
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return sent, frames
		}
		if f.Header().StreamID == 1 {
			frames = append(frames, f)
		}
	}
}

// hpackInt is n as an HPACK integer with a 7-bit prefix and no flags.
func hpackInt(n int) []byte {
	if n < 127 {
		return []byte{byte(n)}
	}
	out := []byte{127}
	for n -= 127; n >= 128; n >>= 7 {
		out = append(out, byte(n%128+128))
	}
	return append(out, byte(n))
}
