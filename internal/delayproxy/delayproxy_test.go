package delayproxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every byte crosses the proxy both ways, in
// order, and the end of a stream reaches the other side.
func TestProxyCarriesBytes(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo until the client's end
	}()
	p, err := New(lis.Addr().String(), 5*time.Millisecond)
	require.NoError(t, err)
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	sent := make([]byte, 1<<20)
	_, err = rand.Read(sent)
	require.NoError(t, err)
	go func() {
		_, _ = c.Write(sent)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.True(t, bytes.Equal(sent, got), "got %d bytes back, sent %d", len(got), len(sent))
}
