package consul

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// connCounter is a TCP proxy in front of Consul that counts the
// connections made through it: those of the client given its address,
// and no other's. Its own connections to Consul come from loopback too,
// so they count against Consul's limit per client as the source's would.
type connCounter struct {
	lis    net.Listener
	target string
	opened atomic.Int64 // ever
	open   atomic.Int64 // now
	most   atomic.Int64 // at once
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func countConns(t *testing.T, target string) *connCounter {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &connCounter{lis: lis, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		_ = lis.Close()
		p.mu.Lock()
		for c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *connCounter) Addr() string { return p.lis.Addr().String() }

func (p *connCounter) serve() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.opened.Add(1)
		n := p.open.Add(1)
		for m := p.most.Load(); n > m && !p.most.CompareAndSwap(m, n); m = p.most.Load() {
		}
		p.mu.Lock()
		p.conns[c] = true
		p.mu.Unlock()
		p.wg.Go(func() {
			defer func() {
				p.mu.Lock()
				delete(p.conns, c)
				p.mu.Unlock()
				p.open.Add(-1)
			}()
			defer c.Close()
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				done <- struct{}{}
			}
			go pipe(up, c)
			go pipe(c, up)
			<-done // either side closed: close both
		})
	}
}

// leaderPoller asks Consul for its leader over and over, as another
// local client would, until stopped.
type leaderPoller struct {
	answered, failed int
	slowest          time.Duration
	firstErr         error
	stop             chan struct{}
	done             chan struct{}
}

func pollLeader(addr string) *leaderPoller {
	p := &leaderPoller{stop: make(chan struct{}), done: make(chan struct{})}
	// Its own connections, as curl's would be: none kept from a request
	// to the next.
	hc := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			start := time.Now()
			resp, err := hc.Get("http://" + addr + "/v1/status/leader")
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("answered %s", resp.Status)
				}
			}
			if err != nil {
				p.failed++
				if p.firstErr == nil {
					p.firstErr = err
				}
				continue
			}
			p.answered++
			p.slowest = max(p.slowest, time.Since(start))
		}
	}()
	return p
}

func (p *leaderPoller) Stop() {
	close(p.stop)
	<-p.done
}
