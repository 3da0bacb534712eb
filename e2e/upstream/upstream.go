// Package upstream holds the services the end-to-end suite, the demo and
// the bench put behind the gateways: HTTP/1.1 with h2c and a WebSocket
// echo, gRPC (a unary and a server-streaming method), a TCP echo, and a TLS
// echo presenting its own certificate. Each counts the connections it
// accepted, so that a test can assert that a refused caller never reached
// it.
package upstream

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// Server is one running upstream on a loopback port.
type Server struct {
	// Name is what the server says it is in its answers.
	Name     string
	listener *countingListener
	close    func() error
	once     sync.Once
	err      error
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Port is the port the server listens on.
func (s *Server) Port() uint32 { return uint32(s.listener.Addr().(*net.TCPAddr).Port) }

// Accepted is the number of connections the server accepted so far.
func (s *Server) Accepted() int64 { return s.listener.accepted.Load() }

// Close stops the server and closes its connections.
func (s *Server) Close() error {
	s.once.Do(func() { s.err = s.close() })
	return s.err
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func listen(addr string) (*countingListener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &countingListener{Listener: l}, nil
}

// serveConns accepts connections and hands each to handle until the
// listener closes; closing returns only once every handler returned.
func serveConns(l net.Listener, handle func(net.Conn)) func() error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				_ = c.Close()
			}()
		}
	}()
	return func() error {
		err := l.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	}
}

// TCPEcho starts a server that writes back every byte it reads, on addr
// (127.0.0.1:0 when empty).
func TCPEcho(name, addr string) (*Server, error) {
	l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Name: name, listener: l}
	s.close = serveConns(l, func(c net.Conn) { echo(c) })
	return s, nil
}

// TLSEcho starts a server that completes a TLS handshake with cfg (which
// may require and verify a client certificate), records the URI SANs of
// the client's certificate, and echoes every byte.
func TLSEcho(name, addr string, cfg *tls.Config) (*TLSServer, error) {
	l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	s := &TLSServer{Server: Server{Name: name, listener: l}}
	s.close = serveConns(l, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			s.handshakeErrors.Add(1)
			return
		}
		s.record(tc.ConnectionState())
		echo(tc)
	})
	return s, nil
}

// TLSServer is a TLSEcho server.
type TLSServer struct {
	Server
	handshakeErrors atomic.Int64
	mu              sync.Mutex
	peers           []string
	serverNames     []string
}

func (s *TLSServer) record(st tls.ConnectionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serverNames = append(s.serverNames, st.ServerName)
	peer := ""
	if len(st.PeerCertificates) > 0 && len(st.PeerCertificates[0].URIs) > 0 {
		peer = st.PeerCertificates[0].URIs[0].String()
	}
	s.peers = append(s.peers, peer)
}

// Peers are the URI SANs the clients presented, one per completed
// handshake ("" for a client without a certificate).
func (s *TLSServer) Peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.peers...)
}

// ServerNames are the SNIs the clients sent, one per completed handshake.
func (s *TLSServer) ServerNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.serverNames...)
}

// HandshakeErrors counts the handshakes that failed.
func (s *TLSServer) HandshakeErrors() int64 { return s.handshakeErrors.Load() }

func echo(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
