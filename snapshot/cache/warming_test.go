package cache

import (
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
