package adsclient_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot/cache"
	"github.com/meshfed/meshfed/xds"
	"github.com/meshfed/meshfed/xds/adsclient"
)

func egress(string) (model.Role, bool) { return model.Egress, true }

func testCluster(name string, seconds int64) *cluster.Cluster {
	return &cluster.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Duration(seconds) * time.Second)}
}

func set(m proto.Message, name string) cache.Change {
	return cache.Change{TypeURL: "type.googleapis.com/" + string(proto.MessageName(m)), Name: name, Resource: m}
}

// serve serves c on loopback and returns a connection to it.
func serve(t *testing.T, c gcache.Cache) *grpc.ClientConn {
	t.Helper()
	s, err := xds.New(xds.Config{Cache: c, NodeRole: egress,
		MaxRecvMsgSize: config.DefaultMaxRequestBytes, MaxConcurrentStreams: config.DefaultMaxStreamsPerConnection,
		MaxStreamsPerNode: config.DefaultMaxStreamsPerNode, MaxStreamsPerIdentity: config.DefaultMaxStreamsPerIdentity,
		MaxStreams: config.DefaultMaxStreams, FirstRequestTimeout: config.DefaultFirstRequestTimeout,
	})
	require.NoError(t, err)
	conn, err := grpc.NewClient(servetest.Serve(t, s.Serve), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// running is a client following a stream, its updates in a channel.
type running struct {
	updates chan adsclient.Update
	cancel  context.CancelFunc
	done    chan error
	// pending are updates read while waiting for another type.
	pending []adsclient.Update
}

func run(t *testing.T, c *adsclient.Client, conn *grpc.ClientConn) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{updates: make(chan adsclient.Update, 100), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx, conn, r.updates) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

// next waits for the next update of a type.
func (r *running) next(t *testing.T, typeURL string) adsclient.Update {
	t.Helper()
	for i, u := range r.pending {
		if u.TypeURL == typeURL {
			r.pending = append(r.pending[:i], r.pending[i+1:]...)
			return u
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-r.updates:
			if u.TypeURL == typeURL {
				return u
			}
			r.pending = append(r.pending, u)
		case <-deadline:
			t.Fatalf("no update of %s", typeURL)
		}
	}
}

func TestStateDigestsAndCallback(t *testing.T) {
	c := cache.New(egress, nil)
	require.NoError(t, c.Apply(model.Egress, []cache.Change{set(testCluster("a", 1), "a"), set(testCluster("b", 2), "b")}))
	conn := serve(t, c)
	for _, delta := range []bool{false, true} {
		called := make(chan adsclient.Update, 100)
		cl := adsclient.New(adsclient.Options{NodeID: "gw", Delta: delta, DigestsOnly: true, OnUpdate: func(u adsclient.Update) { called <- u }})
		r := run(t, cl, conn)
		u := r.next(t, resource.ClusterType)
		assert.ElementsMatch(t, []string{"a", "b"}, u.Updated)
		require.Len(t, u.Decoded, 2)
		for i, name := range u.Updated {
			assert.Empty(t, cmp.Diff(testCluster(name, map[string]int64{"a": 1, "b": 2}[name]), u.Decoded[i], protocmp.Transform()))
		}
		assert.False(t, u.Acked.IsZero())
		// The callback saw the update first, after its ACK.
		for cb := range called {
			if cb.TypeURL == resource.ClusterType {
				assert.Equal(t, u.Acked, cb.Acked)
				break
			}
		}

		// Digests name the content; DigestsOnly holds no resources.
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(testCluster("a", 1))
		require.NoError(t, err)
		d, ok := cl.Held(resource.ClusterType, "a")
		require.True(t, ok)
		assert.Equal(t, adsclient.Digest(b), d)
		assert.Equal(t, d, cl.Digests()[resource.ClusterType]["a"])
		assert.Equal(t, 2, cl.Len(resource.ClusterType))
		assert.Empty(t, cl.State()[resource.ClusterType])
		if delta {
			assert.Len(t, cl.Versions()[resource.ClusterType], 2)
		} else {
			assert.Equal(t, c.Version(model.Egress, resource.ClusterType), cl.SotwVersion(resource.ClusterType))
		}
		r.stop()
	}
}

// A client run again resumes from what it holds: a delta stream announces
// its versions and is sent only what changed meanwhile; a state-of-the-world
// stream announces its version.
func TestRunAgainResumes(t *testing.T) {
	c := cache.New(egress, nil)
	require.NoError(t, c.Apply(model.Egress, []cache.Change{set(testCluster("a", 1), "a"), set(testCluster("b", 2), "b")}))
	conn := serve(t, c)
	for _, delta := range []bool{true, false} {
		cl := adsclient.New(adsclient.Options{NodeID: "gw", Delta: delta})
		r := run(t, cl, conn)
		r.next(t, resource.ClusterType)
		r.stop()

		require.NoError(t, c.Apply(model.Egress, []cache.Change{set(testCluster("b", 3), "b")}))
		r = run(t, cl, conn)
		u := r.next(t, resource.ClusterType)
		if delta {
			assert.Equal(t, []string{"b"}, u.Updated, "only what changed")
		} else {
			assert.ElementsMatch(t, []string{"a", "b"}, u.Updated, "the whole type, which changed")
		}
		got, err := cl.State()[resource.ClusterType]["b"].UnmarshalNew()
		require.NoError(t, err)
		assert.Empty(t, cmp.Diff(testCluster("b", 3), got, protocmp.Transform()))
		r.stop()
		require.NoError(t, c.Apply(model.Egress, []cache.Change{set(testCluster("b", 2), "b")}))
	}
}

// With PartialSotw, a state-of-the-world response of endpoints adds to what
// is held (LinearCache sends only what changed); clusters stay whole.
func TestPartialSotw(t *testing.T) {
	quiet := log.LoggerFuncs{}
	caches := map[string]*gcache.LinearCache{}
	mux := &gcache.MuxCache{
		Classify:      func(r *gcache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *gcache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        map[string]gcache.Cache{},
	}
	for _, typ := range adsclient.Types {
		caches[typ] = gcache.NewLinearCache(typ, gcache.WithLogger(quiet))
		mux.Caches[typ] = caches[typ]
	}
	caches[resource.EndpointType].SetResources(map[string]types.Resource{
		"a": &endpoint.ClusterLoadAssignment{ClusterName: "a"},
		"b": &endpoint.ClusterLoadAssignment{ClusterName: "b"},
	})
	caches[resource.ClusterType].SetResources(map[string]types.Resource{"a": testCluster("a", 1), "b": testCluster("b", 1)})
	conn := serve(t, mux)
	cl := adsclient.New(adsclient.Options{NodeID: "gw", PartialSotw: true})
	r := run(t, cl, conn)
	assert.ElementsMatch(t, []string{"a", "b"}, r.next(t, resource.EndpointType).Updated)
	assert.ElementsMatch(t, []string{"a", "b"}, r.next(t, resource.ClusterType).Updated)

	require.NoError(t, caches[resource.EndpointType].UpdateResource("a", &endpoint.ClusterLoadAssignment{ClusterName: "a", Endpoints: []*endpoint.LocalityLbEndpoints{{}}}))
	u := r.next(t, resource.EndpointType)
	assert.Equal(t, []string{"a"}, u.Updated)
	assert.Empty(t, u.Removed)
	assert.Len(t, cl.State()[resource.EndpointType], 2, "b is still held")

	require.NoError(t, caches[resource.ClusterType].DeleteResource("b"))
	u = r.next(t, resource.ClusterType)
	assert.Equal(t, []string{"b"}, u.Removed, "clusters are whole in every response")
	assert.Len(t, cl.State()[resource.ClusterType], 1)
	assert.Zero(t, cl.Nacks())
}

// When the server ends the stream, Run says why, not just that a Send
// failed.
func TestRunReportsWhyTheServerEndedTheStream(t *testing.T) {
	c := cache.New(egress, nil)
	require.NoError(t, c.Apply(model.Egress, []cache.Change{set(testCluster("a", 1), "a")}))
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(256))
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(context.Background(), c, nil))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	versions := map[string]string{}
	for i := range 50 {
		versions[fmt.Sprintf("cluster-%d", i)] = "v1"
	}
	cl := adsclient.New(adsclient.Options{NodeID: "gw", Delta: true, InitialVersions: map[string]map[string]string{resource.ClusterType: versions}})
	err = cl.Run(context.Background(), conn, nil)
	require.ErrorContains(t, err, "larger than max")
}
