package peer_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/federation/peer"
)

// Peers change while the manager runs: a removed peer's stream ends and
// its imports go, a peer added back connects again, and a peer that did
// not change keeps its stream.
func TestSetPeersWhileRunning(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b", "mesh-c")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
	b.export([]string{"payments"}, "mesh-a")
	c := newAgent(t, "mesh-c", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
	c.export([]string{"shipping"}, "mesh-a")
	withB := []peer.Spec{spec("mesh-b", p.td("mesh-b"), b.addr)}
	a := newAgent(t, "mesh-a", p, withB, nil)
	a.eventuallyImports("mesh-b", "payments")
	since := a.status("mesh-b").Since

	// mesh-c added: it connects, mesh-b's stream stays.
	both := append(withB, spec("mesh-c", p.td("mesh-c"), c.addr))
	require.NoError(t, a.manager.SetPeers(both))
	a.eventuallyImports("mesh-c", "shipping")
	require.Equal(t, peer.Connected, a.status("mesh-b").State)
	require.Equal(t, since, a.status("mesh-b").Since, "mesh-b's stream was not touched")

	// mesh-b removed: its imports go, and it is no longer listed.
	require.NoError(t, a.manager.SetPeers(both[1:]))
	a.eventuallyImports("mesh-b")
	require.Len(t, a.manager.Status(), 1)
	require.Equal(t, "mesh-c", a.manager.Status()[0].Name)

	// Back again: it connects and its services are imported again.
	require.NoError(t, a.manager.SetPeers(both))
	a.eventuallyImports("mesh-b", "payments")

	// A bad set changes nothing.
	require.EqualError(t, a.manager.SetPeers(append(both, both[0])), `peer "mesh-b" is configured twice`)
	require.Len(t, a.manager.Status(), 2)
	require.Eventually(t, func() bool { return a.status("mesh-b").State == peer.Connected }, 20*time.Second, 10*time.Millisecond)
}
