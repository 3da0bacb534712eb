package cache

import (
	"context"
	"net"
	"os"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/model"
)

// contractVersion is the go-control-plane release whose delta server the
// resume marker was checked against.
const contractVersion = "v0.14.0"

// The cache tells go-control-plane what a delta stream holds only through a
// response's next version map: it relies on the server keeping that map and
// handing it, untouched, to the stream's next watch (ReturnedResources), so
// that a stream resumes from its marker in O(changes). This checks it
// against the real server of the version in go.mod.
func TestDeltaResumeContract(t *testing.T) {
	raw, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	mod, err := modfile.ParseLax("go.mod", raw, nil)
	require.NoError(t, err)
	found := false
	for _, r := range mod.Require {
		if r.Mod.Path == "github.com/envoyproxy/go-control-plane" {
			found = true
			require.Equal(t, contractVersion, r.Mod.Version,
				"go-control-plane changed: check that its delta server still passes a response's next version map to the next watch, then update contractVersion")
		}
	}
	require.True(t, found, "go.mod requires go-control-plane")

	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 1)}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gs := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, c, nil))
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	require.NoError(t, err)

	require.NoError(t, st.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "egress-1"}, TypeUrl: resource.ClusterType}))
	first, err := st.Recv()
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, names(first.Resources))
	require.NoError(t, st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: first.Nonce}))

	// Only what changed comes next: the watch after the ACK resumed from
	// the first response's marker.
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("b", 2)}))
	next, err := st.Recv()
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, names(next.Resources))
	require.Empty(t, next.RemovedResources)
}
