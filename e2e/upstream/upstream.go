// Package upstream holds the services the end-to-end suite, the demo and
// the bench put behind the gateways: HTTP/1.1 with h2c and a WebSocket
// echo, gRPC (a unary and a server-streaming method), a TCP echo, and a TLS
// echo presenting its own certificate. Each counts the connections it
// accepted, so that a test can assert that a refused caller never reached
// it.
package upstream

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
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

// TCPAtEOF starts a server that reads a connection to its end (the
// client's half-close) before it writes back every byte it read, then
// closes, on addr (127.0.0.1:0 when empty): its answer crosses a gateway
// only if the gateway carried the half-close and kept the other
// direction open.
func TCPAtEOF(name, addr string) (*Server, error) {
	l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Name: name, listener: l}
	s.close = serveConns(l, answerAtEOF)
	return s, nil
}

// TLSAtEOF is TCPAtEOF inside layers of TLS, as TLSEcho.
func TLSAtEOF(name, addr string, layers ...*tls.Config) (*TLSServer, error) {
	return layered(name, addr, answerAtEOF, layers)
}

func answerAtEOF(c net.Conn) {
	var b bytes.Buffer
	if _, err := io.Copy(&b, c); err != nil {
		return
	}
	_, _ = c.Write(b.Bytes())
}

// TLSEcho starts a server that completes a TLS handshake with each of
// layers in turn (one inside the other: a backend that terminates a
// gateway's mutual TLS and then its client's own TLS inside), records what
// each layer saw, and echoes every byte, on addr (127.0.0.1:0 when empty).
func TLSEcho(name, addr string, layers ...*tls.Config) (*TLSServer, error) {
	return layered(name, addr, echo, layers)
}

// TLSHTTP is TLSEcho answering one HTTP/1.1 request per connection, as
// HTTP does, inside its layers.
func TLSHTTP(name, addr string, layers ...*tls.Config) (*TLSServer, error) {
	h := httpHandler(name)
	return layered(name, addr, func(c net.Conn) { serveOneRequest(c, h) }, layers)
}

func layered(name, addr string, serve func(net.Conn), layers []*tls.Config) (*TLSServer, error) {
	l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	s := &TLSServer{Server: Server{Name: name, listener: l}}
	s.close = serveConns(l, func(c net.Conn) {
		var seen []Layer
		for _, cfg := range layers {
			tc := tls.Server(c, cfg)
			if err := tc.Handshake(); err != nil {
				s.handshakeErrors.Add(1)
				return
			}
			seen = append(seen, layerOf(tc.ConnectionState()))
			c = tc
		}
		s.record(seen)
		serve(c)
	})
	return s, nil
}

// Layer is what one TLS layer of a connection saw: the SNI the client sent
// and the URI SAN of its certificate ("" without one).
type Layer struct {
	ServerName, Peer string
}

func layerOf(st tls.ConnectionState) Layer {
	l := Layer{ServerName: st.ServerName}
	if len(st.PeerCertificates) > 0 && len(st.PeerCertificates[0].URIs) > 0 {
		l.Peer = st.PeerCertificates[0].URIs[0].String()
	}
	return l
}

// TLSServer is a TLSEcho server.
type TLSServer struct {
	Server
	handshakeErrors atomic.Int64
	mu              sync.Mutex
	conns           [][]Layer
}

func (s *TLSServer) record(layers []Layer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns = append(s.conns, layers)
}

// Connections are, per connection that completed every handshake, what
// each layer saw, outermost first.
func (s *TLSServer) Connections() [][]Layer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]Layer(nil), s.conns...)
}

// Peers are the URI SANs the clients presented to the outermost layer,
// one per connection.
func (s *TLSServer) Peers() []string {
	var out []string
	for _, c := range s.Connections() {
		out = append(out, c[0].Peer)
	}
	return out
}

// ServerNames are the SNIs the clients sent to the outermost layer, one
// per connection.
func (s *TLSServer) ServerNames() []string {
	var out []string
	for _, c := range s.Connections() {
		out = append(out, c[0].ServerName)
	}
	return out
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
