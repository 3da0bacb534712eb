package agent

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/model"
)

// An agent that stops ends the streams of the peers that dialed it with
// Unavailable and says that it is shutting down (not that the stream was
// replaced); the peer says so in its status, backs off and retries as for
// any Unavailable, and connects again once the agent is back on its
// address.
func TestShutdownTellsPeersAndTheyReconnect(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a := start(t, ma.config(t, mb, ""))
	a.Catalog.SetExports([]model.Export{inventory()})
	addr := a.FederationAddr().String()
	b := start(t, mb.config(t, ma, addr))
	require.Eventually(t, func() bool { return len(b.Catalog.Imports()) == 1 }, 20*time.Second, 10*time.Millisecond)

	a.stop()
	const shuttingDown = "rpc error: code = Unavailable desc = meshfed agent spiffe://mesh-a.example/meshfed/agent is shutting down; reconnect with backoff"
	var st peer.Status
	require.Eventually(t, func() bool {
		st = b.Peers.Status()[0]
		return st.LastError == shuttingDown
	}, 20*time.Second, time.Millisecond)
	require.Contains(t, []peer.State{peer.Backoff, peer.Connecting}, st.State, "retried, not given up")

	path := filepath.Join(ma.dir, "meshfed.yaml")
	editFile(t, path, "  listen: 127.0.0.1:0\n  ingress:", "  listen: "+addr+"\n  ingress:")
	c, err := config.Load(path)
	require.NoError(t, err)
	start(t, c)
	require.Eventually(t, func() bool {
		st = b.Peers.Status()[0]
		return st.State == peer.Connected
	}, 30*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, st.Reconnects, 1, "redialed after a backoff")
}
