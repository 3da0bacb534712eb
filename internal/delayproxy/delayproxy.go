// Package delayproxy is a TCP proxy that adds a fixed delay each way: a WAN
// link on loopback, where the kernel has no netem. The bench and the
// federation tests measure and check sync over it.
package delayproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy that delays every byte by a fixed one-way
// delay in each direction, so that a connection through it sees a round
// trip of twice that on top of loopback's. It stands in for a WAN link
// where the kernel has no netem. Bytes are delayed, not throttled: a
// chunk read at t is written at t+delay, whatever else is in flight.
type Proxy struct {
	lis    net.Listener
	target string
	delay  time.Duration

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// New listens on loopback and forwards each connection to target with
// delay added each way.
func New(target string, delay time.Duration) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{lis: lis, target: target, delay: delay}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is where to connect to reach target through the delay.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Add(2)
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// track remembers the connections for close, unless closed.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

// chunk is bytes read at a time, due at another.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, each chunk delayed; at the end of src it closes
// dst's write side once the delayed bytes are written.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	q := make(chan chunk, 1024)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for c := range q {
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.b); err != nil {
				// Drain, so that the reader never blocks on q.
				for range q {
				}
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	for {
		b := make([]byte, 32<<10)
		n, err := src.Read(b)
		if n > 0 {
			q <- chunk{b: b[:n], due: time.Now().Add(p.delay)}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			}
			break
		}
	}
	close(q)
	wg.Wait()
}

// Close stops accepting, ends every connection and waits for the pipes.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.lis.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
