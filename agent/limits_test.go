package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/xds"
)

// withBounds writes m's configuration with lines added to its federation
// and xds blocks, and loads it.
func withBounds(t *testing.T, m, other mesh, dial, federation, xdsLines string) (*config.Config, string) {
	t.Helper()
	m.config(t, other, dial)
	path := filepath.Join(m.dir, "meshfed.yaml")
	editFile(t, path, "  listen: 127.0.0.1:0\n  ingress:", "  listen: 127.0.0.1:0\n"+federation+"  ingress:")
	editFile(t, path, "  holdoff: 1ms\n", "  holdoff: 1ms\n"+xdsLines)
	c, err := config.Load(path)
	require.NoError(t, err)
	return c, path
}

// What the file says reaches the peer manager and the xDS server as it
// is.
func TestBoundsReachThePeerManagerAndTheXDSServer(t *testing.T) {

	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	d := ma.config(t, mb, "")
	pc, xc := peerConfig(d), xdsConfig(d)
	require.Equal(t, config.DefaultMaxBatch, pc.MaxBatch)
	require.Equal(t, config.DefaultBatchDelay, pc.BatchDelay)
	require.Equal(t, xds.Config{Address: d.XDS.Listen, MaxRecvMsgSize: config.DefaultMaxRequestBytes,
		MaxConcurrentStreams: config.DefaultMaxStreamsPerConnection, MaxStreamsPerNode: config.DefaultMaxStreamsPerNode,
		MaxStreamsPerIdentity: config.DefaultMaxStreamsPerIdentity, MaxStreams: config.DefaultMaxStreams,
		FirstRequestTimeout: config.DefaultFirstRequestTimeout, HandshakeTimeout: config.DefaultHandshakeTimeout,
		MaxHandshakes: config.DefaultMaxHandshakes, MaxHandshakesPerSource: config.DefaultMaxHandshakesPerSource}, xc)

	c, _ := withBounds(t, ma, mb, "", "  window: 8\n  maxBatch: 3\n  batchDelay: 250ms\n",
		"  maxRequestBytes: 2097152\n  maxStreamsPerConnection: 7\n  maxStreamsPerNode: 2\n"+
			"  maxStreamsPerIdentity: 30\n  maxStreams: 50\n  firstRequestTimeout: 3s\n"+
			"  handshakeTimeout: 2s\n  maxHandshakes: 9\n  maxHandshakesPerSource: 4\n")
	pc, xc = peerConfig(c), xdsConfig(c)
	require.Equal(t, 8, pc.Window)
	require.Equal(t, 3, pc.MaxBatch)
	require.Equal(t, 3, pc.ServicesPerResponse, "a peer's response holds no more than a transaction")
	require.Equal(t, 250*time.Millisecond, pc.BatchDelay)
	require.Equal(t, xds.Config{Address: c.XDS.Listen, MaxRecvMsgSize: 2 << 20, MaxConcurrentStreams: 7, MaxStreamsPerNode: 2,
		MaxStreamsPerIdentity: 30, MaxStreams: 50, FirstRequestTimeout: 3 * time.Second,
		HandshakeTimeout: 2 * time.Second, MaxHandshakes: 9, MaxHandshakesPerSource: 4}, xc)

	// 0s is no wait, as a session takes it.
	c, _ = withBounds(t, ma, mb, "", "  batchDelay: 0s\n", "")
	require.Zero(t, peerConfig(c).BatchDelay)
}

// openStream opens a delta ADS stream for node on conn and sends its first
// request.
func openStream(t *testing.T, conn *grpc.ClientConn, node string) discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	require.NoError(t, err)
	require.NoError(t, st.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: resource.ClusterType}))
	return st
}

func streamsOf(a *Agent, node string) int {
	n := 0
	for _, c := range a.XDS.Clients() {
		if c.NodeID == node {
			n++
		}
	}
	return n
}

// An agent configured with xds.maxStreamsPerNode 2 refuses a gateway's
// third stream with ResourceExhausted. A reload that changes any of the
// bounds names each as needing a restart, and the running ones stay.
func TestConfiguredStreamsPerNodeAndReload(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	c, path := withBounds(t, ma, mb, "", "", "  maxStreamsPerNode: 2\n")
	a := startOperable(t, c, path)
	conn, err := grpc.NewClient(xds.Target(a.XDSAddr()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	refused := func() {
		t.Helper()
		_, err := openStream(t, conn, "egress-gateway").Recv()
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
		require.ErrorContains(t, err, `xds: node id "egress-gateway" has 2 streams open, the most it may`)
	}
	for i := range 2 {
		openStream(t, conn, "egress-gateway")
		require.Eventually(t, func() bool { return streamsOf(a, "egress-gateway") == i+1 }, 20*time.Second, time.Millisecond)
	}
	refused()
	require.Equal(t, 2, streamsOf(a, "egress-gateway"))

	editFile(t, path, "  listen: 127.0.0.1:0\n  ingress:", "  listen: 127.0.0.1:0\n  maxBatch: 1\n  batchDelay: 0s\n  ingress:")
	editFile(t, path, "  maxStreamsPerNode: 2\n", "  maxStreamsPerNode: 5\n  maxRequestBytes: 2097152\n  maxStreamsPerConnection: 7\n"+
		"  maxStreamsPerIdentity: 30\n  maxStreams: 50\n  firstRequestTimeout: 3s\n")
	res, err := a.Reload(context.Background())
	require.NoError(t, err)
	require.Equal(t, ReloadResult{Applied: []string{}, NeedsRestart: []string{
		"federation.maxBatch", "federation.batchDelay",
		"xds.maxRequestBytes", "xds.maxStreamsPerConnection", "xds.maxStreamsPerNode",
		"xds.maxStreamsPerIdentity", "xds.maxStreams", "xds.firstRequestTimeout",
	}}, res)
	refused()
}

// Agents whose sessions store each response of a window of 8 in a
// transaction of its own, without waiting for more, exchange their
// catalogs all the same.
func TestMaxBatchOfOneFederates(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	const bounds = "  window: 8\n  maxBatch: 1\n  batchDelay: 0s\n"
	ca, _ := withBounds(t, ma, mb, "", bounds, "")
	a := start(t, ca)
	a.Catalog.SetExports([]model.Export{inventory(), orders()})
	cb, _ := withBounds(t, mb, ma, a.FederationAddr().String(), bounds, "")
	b := start(t, cb)
	require.Eventually(t, func() bool { return len(b.Catalog.Imports()) == 2 }, 20*time.Second, 20*time.Millisecond)
	for _, p := range b.Peers.Status() {
		require.NotNil(t, p.Capabilities)
		require.Equal(t, 8, p.Capabilities.Window)
	}
}
