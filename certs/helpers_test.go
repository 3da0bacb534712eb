package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
)

var (
	tdA    = spiffeid.RequireTrustDomainFromString("a.example")
	tdB    = spiffeid.RequireTrustDomainFromString("b.example")
	tdEvil = spiffeid.RequireTrustDomainFromString("evil.example")
)

// waitTimeout bounds waits for background work; it is a deadlock guard,
// never an assertion about speed.
const waitTimeout = 10 * time.Second

func newCA(t *testing.T, td spiffeid.TrustDomain) *CA {
	t.Helper()
	ca, err := NewTestCA(td)
	require.NoError(t, err)
	return ca
}

func mustID(t *testing.T, td spiffeid.TrustDomain, path string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromPath(td, path)
	require.NoError(t, err)
	return id
}

func parseLeaf(t *testing.T, chainPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(chainPEM)
	require.NotNil(t, b)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

// tlsEchoServer accepts TLS connections on loopback, reports each server
// handshake result on errs, and echoes data on good connections.
type tlsEchoServer struct {
	addr string
	errs chan error
}

func startEchoServer(t *testing.T, cfg *tls.Config) *tlsEchoServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	s := &tlsEchoServer{addr: ln.Addr().String(), errs: make(chan error, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				err := c.(*tls.Conn).HandshakeContext(ctx)
				s.errs <- err
				if err == nil {
					_, _ = io.Copy(c, c)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// serverErr waits for the next server-side handshake result.
func (s *tlsEchoServer) serverErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errs:
		return err
	case <-time.After(waitTimeout):
		t.Fatal("no server handshake result")
		return nil
	}
}

func dial(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := &tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*tls.Conn), nil
}

// echo proves a connection still carries data.
func echo(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(waitTimeout)))
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, msg, string(buf))
}

func waitSignal(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatal("no change notification")
	}
}
