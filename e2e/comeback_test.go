package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/federation/peer"
)

// A peer removed by a reload and added back by another comes back without
// restarting either agent: on the side that accepts its stream (mesh-a),
// the dialer (mesh-b) is refused as not a peer, keeps retrying, and is in
// again at its first retry once it is back; on the dialing side the peer
// is dialed again at once. Imports and requests through the gateways
// follow each time.
func TestPeerRemovedAndAddedBackComesBack(t *testing.T) {
	a, b := federate(t, options{maxBackoff: "2s"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	toB := startLoop(t, "mesh-a to payments", func(ctx context.Context) error { _, err := a.importedHTTP(ctx, "/comeback"); return err })
	toA := startLoop(t, "mesh-b to inventory", func(ctx context.Context) error { _, err := b.importedHTTP(ctx, "/comeback"); return err })
	toB.waitOK(t, 5)
	toA.waitOK(t, 5)
	seen := watchErrors(t, b, "mesh-a")

	// On the accepting side.
	okB, failedB := toB.counts()
	okA, failedA := toA.counts()
	a.PeerRemoved = true
	require.NoError(t, a.WriteConfig())
	_, err := a.agent.Reload(ctx)
	require.NoError(t, err)
	eventually(t, "mesh-a no longer imports payments, and mesh-b is refused as not a peer and retries", func(context.Context) error {
		st := peerStatus(t, b, "mesh-a")
		switch {
		case len(a.agent.Catalog.Imports()) != 0:
			return fmt.Errorf("mesh-a imports %d services", len(a.agent.Catalog.Imports()))
		case st.State != peer.Refused || st.Refusal.Kind != peer.NotAPeer || st.Reconnects < 2:
			return fmt.Errorf("mesh-b's peer mesh-a: %s, %d redials, refusal %+v", st.State, st.Reconnects, st.Refusal)
		}
		return nil
	})
	require.Contains(t, seen.all(), "rpc error: code = Unavailable desc = peer removed from the configuration of this agent by a reload; its next streams are refused until it is added back",
		"mesh-b was told why its stream ended")
	require.Contains(t, peerStatus(t, b, "mesh-a").Refusal.Message,
		`code = PermissionDenied desc = spiffe://mesh-b.example/meshfed/agent is not a peer of this agent: no peer of trust domain "mesh-b.example" is in its configuration`)

	a.PeerRemoved = false
	require.NoError(t, a.WriteConfig())
	redials := peerStatus(t, b, "mesh-a").Reconnects
	back := time.Now()
	_, err = a.agent.Reload(ctx)
	require.NoError(t, err)
	eventually(t, "mesh-a imports payments again", func(context.Context) error {
		if len(a.agent.Catalog.Imports()) == 0 || peerStatus(t, b, "mesh-a").State != peer.Connected {
			return fmt.Errorf("not yet: mesh-b's peer mesh-a is %s", peerStatus(t, b, "mesh-a").State)
		}
		return nil
	})
	took := time.Since(back)
	require.LessOrEqual(t, peerStatus(t, b, "mesh-a").Reconnects, redials+1,
		"mesh-b got in at the retry it was waiting for, or the one after if that one was under way as mesh-a took it back")
	toB.waitOK(t, 10)
	toA.waitOK(t, 10)
	_, lostB := toB.since(okB, failedB)
	_, lostA := toA.since(okA, failedA)
	t.Logf("accepting side: mesh-b imported again %v after the reload that added it back (backoff cap 2s); failed requests while it was out and until it was back: %d to payments, %d to inventory",
		took.Round(time.Millisecond), lostB, lostA)

	// On the dialing side.
	okB, failedB = toB.counts()
	okA, failedA = toA.counts()
	b.PeerRemoved = true
	require.NoError(t, b.WriteConfig())
	_, err = b.agent.Reload(ctx)
	require.NoError(t, err)
	eventually(t, "mesh-b no longer imports inventory, and mesh-a waits for it", func(context.Context) error {
		if n := len(b.agent.Catalog.Imports()); n != 0 {
			return fmt.Errorf("mesh-b imports %d services", n)
		}
		if st := peerStatus(t, a, "mesh-b"); st.State != peer.Waiting {
			return fmt.Errorf("mesh-a's peer mesh-b is %s", st.State)
		}
		return nil
	})
	b.PeerRemoved = false
	require.NoError(t, b.WriteConfig())
	back = time.Now()
	_, err = b.agent.Reload(ctx)
	require.NoError(t, err)
	eventually(t, "both import again", func(context.Context) error {
		if len(b.agent.Catalog.Imports()) == 0 || len(a.agent.Catalog.Imports()) == 0 {
			return fmt.Errorf("mesh-a imports %d, mesh-b %d", len(a.agent.Catalog.Imports()), len(b.agent.Catalog.Imports()))
		}
		return nil
	})
	took = time.Since(back)
	toB.waitOK(t, 10)
	toA.waitOK(t, 10)
	_, lostB = toB.since(okB, failedB)
	_, lostA = toA.since(okA, failedA)
	t.Logf("dialing side: imported again %v after the reload that added mesh-a back; failed requests while it was out and until it was back: %d to payments, %d to inventory",
		took.Round(time.Millisecond), lostB, lostA)

	for _, e := range seen.all() {
		require.NotContains(t, e, "replaced", "no stream of mesh-b was said to be replaced")
	}
	a.checkGateways()
	b.checkGateways()
}

// peerStatus is the status of m's peer name.
func peerStatus(t *testing.T, m *mesh, name string) peer.Status {
	t.Helper()
	for _, s := range m.agent.Peers.Status() {
		if s.Name == name {
			return s
		}
	}
	return peer.Status{Name: name}
}

// errorLog collects every distinct last error a peer's status shows.
type errorLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *errorLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// watchErrors reads the status of m's peer name every 10 ms until the test
// ends: a stream's error shows there for at least the first backoff (1s).
func watchErrors(t *testing.T, m *mesh, name string) *errorLog {
	l := &errorLog{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if e := peerStatus(t, m, name).LastError; e != "" {
				l.mu.Lock()
				if !slices.Contains(l.errs, e) {
					l.errs = append(l.errs, e)
				}
				l.mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return l
}
