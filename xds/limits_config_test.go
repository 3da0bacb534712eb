package xds

import (
	"fmt"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The bounds given in Config are the ones the server holds to, not the
// defaults.

// TestConfiguredStreamsPerNode: with MaxStreamsPerNode 2, a node id's
// third stream ends with ResourceExhausted while its first two are
// served.
func TestConfiguredStreamsPerNode(t *testing.T) {
	e := serveMTLS(t, Config{MaxStreamsPerNode: 2})
	conn := e.dial(t)
	cds := func() *discovery.DeltaDiscoveryRequest {
		return &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType}
	}
	for i := range 2 {
		st, _ := openDelta(t, conn, "egress-delta", cds())
		_, err := st.Recv()
		require.NoError(t, err, "stream %d", i+1)
	}
	st, _ := openDelta(t, conn, "egress-delta", cds())
	_, err := st.Recv()
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	require.ErrorContains(t, err, `xds: node id "egress-delta" has 2 streams open, the most it may`)
	require.Equal(t, 1.0, testutil.ToFloat64(e.server.clients.metrics.overNode))
	require.Equal(t, 2, e.streamsOf("egress-delta"))
}

// TestConfiguredStreamsPerConnection: with MaxConcurrentStreams 3 the
// server announces 3, and a client that opens more on one connection has
// every one beyond the third refused.
func TestConfiguredStreamsPerConnection(t *testing.T) {
	e := serveMTLS(t, Config{MaxConcurrentStreams: 3})
	c := dialRawH2(t, e)
	require.Equal(t, uint32(3), c.maxStreams)
	ids := []uint32{1, 3, 5, 7, 9}
	for _, id := range ids {
		c.open(id)
	}
	require.Equal(t, ids[3:], c.refusedUntil(ids[len(ids)-1]))
}

// TestConfiguredRequestSize: with MaxRecvMsgSize 1 MiB a request just
// under it is taken, and one just over it ends its stream with
// ResourceExhausted before it is acted on.
func TestConfiguredRequestSize(t *testing.T) {
	const limit = 1 << 20
	e := serveMTLS(t, Config{MaxRecvMsgSize: limit})
	conn := e.dial(t)
	// request is a request of node that is size bytes on the wire.
	request := func(node string, size int) *discovery.DeltaDiscoveryRequest {
		r := &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{""}}
		for n := size - proto.Size(r); proto.Size(r) != size; n -= proto.Size(r) - size {
			r.ResourceNamesSubscribe[0] = strings.Repeat("a", n)
		}
		return r
	}

	openDelta(t, conn, "egress-delta", request("egress-delta", limit))
	require.Eventually(t, func() bool { return e.streamsOf("egress-delta") == 1 }, time.Minute, time.Millisecond,
		"a request of exactly the limit is taken")

	over := request("egress-sotw", limit+1)
	st, _ := openDelta(t, conn, "egress-sotw", over)
	_, err := st.Recv()
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	require.ErrorContains(t, err, fmt.Sprintf("grpc: received message larger than max (%d vs. %d)", proto.Size(over), limit))
	require.Zero(t, e.streamsOf("egress-sotw"), "the request was never acted on")
}
