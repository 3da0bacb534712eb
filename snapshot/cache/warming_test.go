package cache

import (
	"fmt"
	"testing"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshfed/meshfed/model"
)

func edsCluster(name, serviceName string, timeoutSeconds int64) Change {
	return Change{TypeURL: resource.ClusterType, Name: name, Resource: &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{ServiceName: serviceName},
		ConnectTimeout:       &durationpb.Duration{Seconds: timeoutSeconds},
	}}
}

// A changed EDS cluster is warmed by Envoy as a new cluster that waits for
// its assignment: the assignment is sent again right after the cluster,
// though its endpoints did not change.
func TestClusterChangeResendsItsAssignment(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{edsCluster("a", "", 1), edsCluster("b", "b-eds", 1), cla("a", 1), cla("b-eds", 1), clusterChange("static", 1)}))
	s := newDeltaStream(t, c, "egress-1")
	s.subscribe(resource.ClusterType)
	require.Equal(t, []string{"a", "b", "static"}, names(s.nextAck().Resources))
	s.subscribe(resource.EndpointType, "a", "b-eds")
	require.Equal(t, []string{"a", "b-eds"}, names(s.nextAck().Resources))

	require.NoError(t, c.Apply(model.Egress, []Change{edsCluster("b", "b-eds", 2)}))
	assert.Equal(t, []string{"b"}, names(s.nextAck().Resources))
	assert.Equal(t, []string{"b-eds"}, names(s.nextAck().Resources), "b's assignment, after b")
	s.none()

	// Neither a cluster of another discovery type nor an unchanged one
	// touches assignments; a new assignment version for the same content
	// and cluster is never made.
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("static", 2), edsCluster("a", "", 1), cla("a", 1)}))
	assert.Equal(t, []string{"static"}, names(s.nextAck().Resources))
	s.none()

	// The version covers the cluster whatever the order things arrived
	// in: a restarted agent gives the same versions.
	other := newTestCache(t)
	require.NoError(t, other.Apply(model.Egress, []Change{cla("b-eds", 1), cla("a", 1)}))
	require.NoError(t, other.Apply(model.Egress, []Change{edsCluster("b", "b-eds", 2), edsCluster("a", "", 1)}))
	assert.Equal(t, versions(c.Resources(model.Egress, resource.EndpointType)), versions(other.Resources(model.Egress, resource.EndpointType)))
}

// State of the world: the repeated EDS request Envoy sends after a cluster
// change is answered, since the type's version changed.
func TestClusterChangeAnswersSotwEndpoints(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{edsCluster("a", "", 1), cla("a", 1)}))
	s := newSotwStream(t, c, "egress-1")
	s.request(resource.EndpointType, "", "a")
	eds := s.next()
	s.ack(eds)

	require.NoError(t, c.Apply(model.Egress, []Change{edsCluster("a", "", 2)}))
	again := s.next()
	assert.NotEqual(t, eds.VersionInfo, again.VersionInfo)
	assert.Len(t, again.Resources, 1)
}

func versions(rs []*discovery.Resource) map[string]string {
	out := map[string]string{}
	for _, r := range rs {
		out[r.Name] = r.Version
	}
	return out
}

// A gateway asking for a type the cache does not serve is refused, and the
// cache keeps nothing for it however many it invents.
func TestUnknownTypeURLsAreRefused(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1)}))
	before := len(c.roles[model.Egress].types)
	for i := range 1000 {
		typeURL := fmt.Sprintf("type.googleapis.com/invented.T%d", i)
		sub := stream.NewDeltaSubscription(nil, nil, nil, true)
		_, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "egress-1"}, TypeUrl: typeURL}, &sub, make(chan gcache.DeltaResponse, 1))
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		ssub := stream.NewSotwSubscription(nil, true)
		_, err = c.CreateWatch(&discovery.DiscoveryRequest{Node: &core.Node{Id: "egress-1"}, TypeUrl: typeURL}, &ssub, make(chan gcache.Response, 1))
		require.EqualError(t, err, fmt.Sprintf("rpc error: code = InvalidArgument desc = type URL %q is not served here", typeURL))
	}
	require.Equal(t, before, len(c.roles[model.Egress].types))
}

// A gateway that rejects everything is not answered again until there is
// something new to send: 100 NACKs of the same state cost no response
// (state of the world resends nothing by itself; delta knows the gateway
// was sent it), and the next change costs one.
func TestNACKLoopIsBounded(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1)}))

	sotw := newSotwStream(t, c, "egress-1")
	sotw.request(resource.ClusterType, "")
	sent := sotw.next()
	cancel := func() {}
	nack := func() {
		// As the server does, a stream's new request replaces its watch.
		cancel()
		req := &discovery.DiscoveryRequest{Node: sotw.node, TypeUrl: resource.ClusterType, ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "rejected"}}
		var err error
		cancel, err = c.CreateWatch(req, sotw.subs[resource.ClusterType], sotw.out)
		require.NoError(t, err)
	}
	delta := newDeltaStream(t, c, "egress-2")
	delta.subscribe(resource.ClusterType)
	delta.next()
	for range 100 {
		nack()
		sotw.none()
		delta.request(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: "n", ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument)}})
		delta.none()
	}
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 2)}))
	assert.NotEqual(t, sent.VersionInfo, sotw.next().VersionInfo)
	assert.Equal(t, []string{"a"}, names(delta.next().Resources))
	sotw.none()
	delta.none()
}
