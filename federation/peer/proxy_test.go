package peer_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// delayProxy forwards TCP connections to target on loopback and delays
// every chunk by delay in each direction, as a link with a round trip of
// twice delay would, without limiting bandwidth.
type delayProxy struct {
	lis    net.Listener
	target string
	delay  time.Duration

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newDelayProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &delayProxy{lis: lis, target: target, delay: delay, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *delayProxy) addr() string { return p.lis.Addr().String() }

func (p *delayProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			// The target is down (restarting): the dialer sees a reset
			// connection and backs off, as it would without the proxy.
			_ = c.Close()
			continue
		}
		p.track(c, up)
		p.wg.Add(2)
		go p.forward(up, c)
		go p.forward(c, up)
	}
}

func (p *delayProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

type chunk struct {
	data []byte
	due  time.Time
}

// forward copies src to dst, each chunk delay after it was read, in order.
// When either side ends, both connections are closed.
func (p *delayProxy) forward(dst, src net.Conn) {
	defer p.wg.Done()
	chunks := make(chan chunk, 4096)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{data: buf[:n], due: time.Now().Add(p.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		if wait := time.Until(c.due); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
	for range chunks {
		// Drain, so that the reader ends once src is closed.
	}
}

func (p *delayProxy) close() {
	_ = p.lis.Close() // ends accept
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
