package xds

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot/cache"
)

func roles(id string) (model.Role, bool) {
	switch id {
	case "egress-sotw", "egress-delta":
		return model.Egress, true
	}
	return "", false
}

func testCluster(name string, seconds int64) *cluster.Cluster {
	return &cluster.Cluster{Name: name, ConnectTimeout: &durationpb.Duration{Seconds: seconds}}
}

func testCLA(name string) *endpoint.ClusterLoadAssignment {
	return &endpoint.ClusterLoadAssignment{ClusterName: name}
}

func change(m proto.Message, name string) cache.Change {
	return cache.Change{TypeURL: "type.googleapis.com/" + string(proto.MessageName(m)), Name: name, Resource: m}
}

type env struct {
	cache    *cache.Cache
	server   *Server
	registry *prometheus.Registry
	conn     *grpc.ClientConn
}

// start serves a cache that already had its first Apply, as the agent does.
func start(t *testing.T, initial []cache.Change) *env {
	t.Helper()
	log := zaptest.NewLogger(t)
	c := cache.New(roles, log)
	require.NoError(t, c.Apply(model.Egress, initial))
	reg := prometheus.NewRegistry()
	s, err := New(withBounds(Config{Cache: c, NodeRole: roles, Logger: log, Registerer: reg}))
	require.NoError(t, err)

	conn, err := grpc.NewClient(servetest.Serve(t, s.Serve), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &env{cache: c, server: s, registry: reg, conn: conn}
}

// assertResources checks the resources of a response, by name.
func assertResources(t *testing.T, want []proto.Message, got []*anypb.Any) {
	t.Helper()
	var msgs []proto.Message
	for _, a := range got {
		m, err := a.UnmarshalNew()
		require.NoError(t, err)
		msgs = append(msgs, m)
	}
	if diff := cmp.Diff(want, msgs, protocmp.Transform()); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
}

func deltaAnys(rs []*discovery.Resource) []*anypb.Any {
	out := make([]*anypb.Any, len(rs))
	for i, r := range rs {
		out[i] = r.Resource
	}
	return out
}

type deltaClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   *core.Node
	// pending holds responses read while waiting for another type.
	pending []*discovery.DeltaDiscoveryResponse
}

func newDeltaClient(t *testing.T, conn *grpc.ClientConn, nodeID string) *deltaClient {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
	require.NoError(t, err)
	return &deltaClient{t: t, stream: st, node: &core.Node{Id: nodeID}}
}

func (d *deltaClient) send(req *discovery.DeltaDiscoveryRequest) {
	d.t.Helper()
	req.Node = d.node
	require.NoError(d.t, d.stream.Send(req))
}

// recv waits for the next response of a type.
func (d *deltaClient) recv(typeURL string) *discovery.DeltaDiscoveryResponse {
	d.t.Helper()
	for i, r := range d.pending {
		if r.TypeUrl == typeURL {
			d.pending = append(d.pending[:i], d.pending[i+1:]...)
			return r
		}
	}
	for {
		r, err := d.stream.Recv()
		require.NoError(d.t, err)
		if r.TypeUrl == typeURL {
			return r
		}
		d.pending = append(d.pending, r)
	}
}

func (d *deltaClient) ack(r *discovery.DeltaDiscoveryResponse) {
	d.t.Helper()
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce})
}

func TestEndToEnd(t *testing.T) {
	a, b := testCluster("a", 1), testCluster("b", 1)
	lis := &listener.Listener{Name: "http"}
	e := start(t, []cache.Change{
		change(a, "a"), change(b, "b"),
		change(testCLA("a"), "a"), change(testCLA("b"), "b"),
		change(lis, "http"),
	})

	// State of the world.
	sotw, err := discovery.NewAggregatedDiscoveryServiceClient(e.conn).StreamAggregatedResources(context.Background())
	require.NoError(t, err)
	sotwNode := &core.Node{Id: "egress-sotw"}
	require.NoError(t, sotw.Send(&discovery.DiscoveryRequest{Node: sotwNode, TypeUrl: resource.ClusterType}))
	cds, err := sotw.Recv()
	require.NoError(t, err)
	assertResources(t, []proto.Message{a, b}, cds.Resources)
	require.NoError(t, sotw.Send(&discovery.DiscoveryRequest{Node: sotwNode, TypeUrl: resource.ClusterType, VersionInfo: cds.VersionInfo, ResponseNonce: cds.Nonce}))

	// Delta.
	d := newDeltaClient(t, e.conn, "egress-delta")
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a", "b"}})
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType})
	r := d.recv(resource.ClusterType)
	assertResources(t, []proto.Message{a, b}, deltaAnys(r.Resources))
	d.ack(r)
	r = d.recv(resource.EndpointType)
	assertResources(t, []proto.Message{testCLA("a"), testCLA("b")}, deltaAnys(r.Resources))
	d.ack(r)
	r = d.recv(resource.ListenerType)
	assertResources(t, []proto.Message{lis}, deltaAnys(r.Resources))
	d.ack(r)

	// One change: the delta client gets that resource only, the
	// state-of-the-world one the whole type.
	b2 := testCluster("b", 2)
	require.NoError(t, e.cache.Apply(model.Egress, []cache.Change{change(a, "a"), change(b2, "b")}))
	r = d.recv(resource.ClusterType)
	assertResources(t, []proto.Message{b2}, deltaAnys(r.Resources))
	assert.Empty(t, r.RemovedResources)
	d.ack(r)
	cds, err = sotw.Recv()
	require.NoError(t, err)
	assertResources(t, []proto.Message{a, b2}, cds.Resources)
	require.NoError(t, sotw.Send(&discovery.DiscoveryRequest{Node: sotwNode, TypeUrl: resource.ClusterType, VersionInfo: cds.VersionInfo, ResponseNonce: cds.Nonce}))

	// A removal.
	require.NoError(t, e.cache.Apply(model.Egress, []cache.Change{{TypeURL: resource.ClusterType, Name: "a"}}))
	r = d.recv(resource.ClusterType)
	assert.Empty(t, r.Resources)
	assert.Equal(t, []string{"a"}, r.RemovedResources)

	// A NACK.
	d.send(&discovery.DeltaDiscoveryRequest{
		TypeUrl: resource.ClusterType, ResponseNonce: r.Nonce,
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "cluster b: bad timeout"},
	})
	var nack *Nack
	require.Eventually(t, func() bool {
		nack = findType(e.server.Clients(), "egress-delta", resource.ClusterType).LastNack
		return nack != nil
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, "cluster b: bad timeout", nack.Reason)
	assert.Equal(t, r.Nonce, nack.Nonce)
	assert.Equal(t, r.SystemVersionInfo, nack.Version)
	assert.Equal(t, 1.0, metric(t, e.registry, "meshfed_xds_nacks_total", "egress", "envoy.config.cluster.v3.Cluster"))

	// The state seen by the status API.
	sotwCDS := findType(e.server.Clients(), "egress-sotw", resource.ClusterType)
	require.Eventually(t, func() bool {
		sotwCDS = findType(e.server.Clients(), "egress-sotw", resource.ClusterType)
		return sotwCDS.AckedVersion == cds.VersionInfo
	}, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		// The removal of a was sent since, and not ACKed by this client.
		sotwCDS = findType(e.server.Clients(), "egress-sotw", resource.ClusterType)
		return sotwCDS.SentVersion == e.cache.Version(model.Egress, resource.ClusterType)
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, 2.0, metric(t, e.registry, "meshfed_xds_clients", "egress", "envoy.config.cluster.v3.Cluster"), "one sotw and one delta stream")
	assert.Positive(t, metric(t, e.registry, "meshfed_xds_push_latency_seconds", "egress", "envoy.config.cluster.v3.Cluster"), "ACKs measured")
}

func TestUnknownNodeGetsNothing(t *testing.T) {
	e := start(t, []cache.Change{change(testCluster("a", 1), "a")})
	stranger := newDeltaClient(t, e.conn, "stranger")
	stranger.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	known := newDeltaClient(t, e.conn, "egress-delta")
	known.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	known.ack(known.recv(resource.ClusterType))

	require.Eventually(t, func() bool {
		return findType(e.server.Clients(), "stranger", resource.ClusterType).TypeURL != ""
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, e.cache.Apply(model.Egress, []cache.Change{change(testCluster("b", 1), "b")}))
	known.recv(resource.ClusterType)

	s := findType(e.server.Clients(), "stranger", resource.ClusterType)
	assert.Empty(t, s.SentVersion, "nothing was sent to the unknown node")
	for _, c := range e.server.Clients() {
		if c.NodeID == "stranger" {
			assert.Equal(t, "unknown", c.Role)
		}
	}
}

func findType(clients []ClientStatus, nodeID, typeURL string) TypeStatus {
	for _, c := range clients {
		if c.NodeID != nodeID {
			continue
		}
		for _, ts := range c.Types {
			if ts.TypeURL == typeURL {
				return ts
			}
		}
	}
	return TypeStatus{}
}

// metric returns a counter or gauge value, or a histogram's sample count, for
// the labels role and type.
func metric(t *testing.T, reg *prometheus.Registry, name, role, typ string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["role"] != role || labels["type"] != typ {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// A gateway reconnecting with the versions of 100,000 resources sends a
// request over gRPC's default 4 MiB limit; it must be served.
func TestLargeReconnectRequest(t *testing.T) {
	a := testCluster("a", 1)
	e := start(t, []cache.Change{change(a, "a")})
	versions := make(map[string]string, 120_000)
	for i := range 120_000 {
		versions[fmt.Sprintf("egress/mesh-b/service-%06d/http", i)] = "0123456789abcdef"
	}
	d := newDeltaClient(t, e.conn, "egress-delta")
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, InitialResourceVersions: versions})
	r := d.recv(resource.ClusterType)
	require.Len(t, r.Resources, 1)
	require.Len(t, r.RemovedResources, 120_000, "every resource the gateway had and the agent does not")
}

// Each kind of xDS is served on a stream of its own too, as an Envoy
// without ADS asks for it: scoped routes as well.
func TestScopedRoutesWithoutADS(t *testing.T) {
	scope := &route.ScopedRouteConfiguration{Name: "s1", RouteConfigurationName: "r1",
		Key: &route.ScopedRouteConfiguration_Key{Fragments: []*route.ScopedRouteConfiguration_Key_Fragment{
			{Type: &route.ScopedRouteConfiguration_Key_Fragment_StringKey{StringKey: "a.example"}},
		}}}
	e := start(t, []cache.Change{change(scope, "s1")})
	st, err := routeservice.NewScopedRoutesDiscoveryServiceClient(e.conn).StreamScopedRoutes(context.Background())
	require.NoError(t, err)
	require.NoError(t, st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "egress-sotw"}}))
	r, err := st.Recv()
	require.NoError(t, err)
	require.Equal(t, resource.ScopedRouteType, r.GetTypeUrl())
	assertResources(t, []proto.Message{scope}, r.GetResources())
}

// withBounds is c with the configuration's default for every bound c
// leaves zero.
func withBounds(c Config) Config {
	if c.MaxRecvMsgSize == 0 {
		c.MaxRecvMsgSize = config.DefaultMaxRequestBytes
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = config.DefaultMaxStreamsPerConnection
	}
	if c.MaxStreamsPerNode == 0 {
		c.MaxStreamsPerNode = config.DefaultMaxStreamsPerNode
	}
	if c.MaxStreamsPerIdentity == 0 {
		c.MaxStreamsPerIdentity = config.DefaultMaxStreamsPerIdentity
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = config.DefaultMaxStreams
	}
	if c.FirstRequestTimeout == 0 {
		c.FirstRequestTimeout = config.DefaultFirstRequestTimeout
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = config.DefaultHandshakeTimeout
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = config.DefaultMaxHandshakes
	}
	if c.MaxHandshakesPerSource == 0 {
		c.MaxHandshakesPerSource = config.DefaultMaxHandshakesPerSource
	}
	return c
}

// A bound left zero is refused, by name: the configuration gives every
// one its default, and a zero would be no bound or no stream at all.
func TestNewRefusesAZeroBound(t *testing.T) {
	roles := func(string) (model.Role, bool) { return model.Egress, true }
	c := withBounds(Config{Cache: cache.New(roles, nil), NodeRole: roles})
	c.MaxStreams = 0
	_, err := New(c)
	require.EqualError(t, err, "xds: MaxStreams is 0; it must be positive")
	c = withBounds(Config{Cache: cache.New(roles, nil), NodeRole: roles})
	c.FirstRequestTimeout = -time.Second
	_, err = New(c)
	require.EqualError(t, err, "xds: FirstRequestTimeout is -1000000000; it must be positive")

	// The handshake bounds are those of a TLS listener, and required with
	// TLS only.
	c = withBounds(Config{Cache: cache.New(roles, nil), NodeRole: roles})
	c.MaxHandshakesPerSource = 0
	_, err = New(c)
	require.NoError(t, err)
	c.TLS, c.AuthorizeNode = &tls.Config{}, func(spiffeid.ID, string) error { return nil }
	_, err = New(c)
	require.EqualError(t, err, "xds: MaxHandshakesPerSource is 0; it must be positive")
}
