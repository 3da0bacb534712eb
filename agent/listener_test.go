package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/model"
)

// The configuration's defaults of the Hamlet listener's bounds are the
// peer manager's, and what the file says reaches the manager.
func TestHandshakeBoundsReachThePeerManager(t *testing.T) {
	require.Equal(t, peer.DefaultHandshakeTimeout, config.DefaultHandshakeTimeout)
	require.Equal(t, peer.DefaultMaxHandshakes, config.DefaultMaxHandshakes)
	require.Equal(t, peer.DefaultMaxHandshakesPerSource, config.DefaultMaxHandshakesPerSource)

	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	pc := peerConfig(ma.config(t, mb, ""))
	require.Equal(t, config.DefaultHandshakeTimeout, pc.HandshakeTimeout)
	require.Equal(t, config.DefaultMaxHandshakes, pc.MaxHandshakes)
	require.Equal(t, config.DefaultMaxHandshakesPerSource, pc.MaxHandshakesPerSource)

	c, _ := withBounds(t, ma, mb, "", "  handshakeTimeout: 750ms\n  maxHandshakes: 9\n  maxHandshakesPerSource: 3\n", "")
	pc = peerConfig(c)
	require.Equal(t, 750*time.Millisecond, pc.HandshakeTimeout)
	require.Equal(t, 9, pc.MaxHandshakes)
	require.Equal(t, 3, pc.MaxHandshakesPerSource)
}

// idleFlood opens TCP connections that never say anything, and notes when
// the other side closes each.
type idleFlood struct {
	t      *testing.T
	target string
	opened atomic.Int64
	// closed counts the connections the other side closed.
	closed atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func (f *idleFlood) dial(from string) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", f.target)
	require.NoError(f.t, err)
	f.opened.Add(1)
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		// A shed connection may be sent an alert first.
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		_ = c.Close()
		f.closed.Add(1)
	}()
}

// open is how many of the flood's connections hold a descriptor here.
func (f *idleFlood) open() int { return int(f.opened.Load() - f.closed.Load()) }

func (f *idleFlood) stop() {
	f.mu.Lock()
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(fds)
}

// metric is the value of a counter or gauge of reg with the given labels.
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

// 5,000 connections that never start TLS, from 50 source addresses, cost
// the agent at most federation.maxHandshakes descriptors and goroutines
// (the rest are shed at once, the oldest first, per source and in all),
// and every one is closed by the agent, the last within
// federation.handshakeTimeout. A peer that dials while the listener is
// full connects and imports: its connection displaces the oldest idle
// one. Counts are read from the process, not timed.
func TestIdleConnectionsCannotStarveThePeerListener(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 5,000 connections")
	}
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	ca, _ := withBounds(t, ma, mb, "", "  handshakeTimeout: 5s\n", "")
	a := start(t, ca)
	a.Catalog.SetExports([]model.Export{inventory()})
	cut := func(reason string) float64 {
		return metric(t, a.reg, "meshfed_hamlet_handshakes_cut_total", map[string]string{"reason": reason})
	}
	inHandshake := func() float64 { return metric(t, a.reg, "meshfed_hamlet_handshakes_in_progress", nil) }

	runtime.GC()
	fds0, goroutines0 := openFDs(t), runtime.NumGoroutine()
	const sources, perSource, total = 50, 100, 5000
	const max = config.DefaultMaxHandshakes
	f := &idleFlood{t: t, target: a.FederationAddr().String()}
	t.Cleanup(f.stop)
	for s := range sources {
		for range perSource {
			f.dial(fmt.Sprintf("127.0.0.%d", s+2))
		}
	}
	require.Eventually(t, func() bool { return f.closed.Load() == total-max && inHandshake() == max },
		time.Minute, 10*time.Millisecond, "all but maxHandshakes are closed at once")
	agentFDs := openFDs(t) - fds0 - f.open()
	agentGoroutines := runtime.NumGoroutine() - goroutines0 - f.open()
	t.Logf("%d connections opened: %d closed at once, %d in their handshake; the agent holds %+d descriptors and %+d goroutines",
		total, f.closed.Load(), max, agentFDs, agentGoroutines)
	require.LessOrEqual(t, agentFDs, max+8)
	require.LessOrEqual(t, agentGoroutines, max+32)
	require.Positive(t, cut("source_saturated"), "sources beyond maxHandshakesPerSource shed their own oldest")
	require.Positive(t, cut("saturated"))
	require.Equal(t, float64(total-max), cut("source_saturated")+cut("saturated"))
	require.Zero(t, cut("timeout"))

	before := cut("saturated")
	b := start(t, mb.config(t, ma, a.FederationAddr().String()))
	require.Eventually(t, func() bool { return len(b.Catalog.Imports()) == 1 }, time.Minute, 10*time.Millisecond)
	require.Greater(t, cut("saturated"), before, "mesh-b's connection came while the listener was full, and displaced the oldest")
	require.Equal(t, peer.Connected, a.Peers.Status()[0].State)

	require.Eventually(t, func() bool { return f.closed.Load() == total }, time.Minute, 10*time.Millisecond,
		"the agent closes every idle connection")
	require.Equal(t, float64(total), cut("source_saturated")+cut("saturated")+cut("timeout"))
	require.Positive(t, cut("timeout"))
	require.Zero(t, inHandshake())
	b.stop()
	require.Eventually(t, func() bool { return openFDs(t) <= fds0+4 }, time.Minute, 10*time.Millisecond,
		"the process is back to its descriptors before the flood")
}

// The listener's bounds and the admin API's names are read at start: a
// reload that changes them names each as needing a restart.
func TestReloadNamesListenerBoundsAsNeedingARestart(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	c, path := withBounds(t, ma, mb, "", "", "")
	a := startOperable(t, c, path)
	editFile(t, path, "  listen: 127.0.0.1:0\n  ingress:", "  listen: 127.0.0.1:0\n  handshakeTimeout: 3s\n  maxHandshakes: 64\n  maxHandshakesPerSource: 8\n  ingress:")
	editFile(t, path, "admin:\n  listen: 127.0.0.1:0\n", "admin:\n  listen: 127.0.0.1:0\n  hosts: [agent.internal]\n")
	res, err := a.Reload(context.Background())
	require.NoError(t, err)
	require.Equal(t, ReloadResult{Applied: []string{}, NeedsRestart: []string{
		"federation.handshakeTimeout", "federation.maxHandshakes", "federation.maxHandshakesPerSource", "admin.hosts",
	}}, res)
}
