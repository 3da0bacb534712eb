package cache

import (
	"fmt"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/model"
)

func TestDeltaSendsOnlyChanges(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 1), clusterChange("c", 1)}))

	s := newDeltaStream(t, c, "egress-1")
	s.subscribe(resource.ClusterType)
	assert.Equal(t, []string{"a", "b", "c"}, names(s.nextAck().Resources))
	s.none()

	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 2)}))
	r := s.nextAck()
	assert.Equal(t, []string{"b"}, names(r.Resources))
	assert.Empty(t, r.RemovedResources)

	require.NoError(t, c.Apply(model.Egress, []Change{deleted(resource.ClusterType, "c"), deleted(resource.ClusterType, "never")}))
	r = s.nextAck()
	assert.Empty(t, r.Resources)
	assert.Equal(t, []string{"c"}, r.RemovedResources)
	s.none()
}

// Changes that land between a response and its ACK, while the stream has no
// watch, are sent with the next watch, and only they.
func TestDeltaCatchesUpAfterAck(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 1)}))
	s := newDeltaStream(t, c, "egress-1")
	s.subscribe(resource.ClusterType)
	s.next() // not ACKed yet

	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("b", 2), clusterChange("d", 1)}))
	require.NoError(t, c.Apply(model.Egress, []Change{deleted(resource.ClusterType, "a")}))
	s.none()
	s.ack(resource.ClusterType)
	r := s.nextAck()
	assert.Equal(t, []string{"b", "d"}, names(r.Resources))
	assert.Equal(t, []string{"a"}, r.RemovedResources)
	s.none()
}

func TestDeltaNamedSubscription(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{cla("a", 1), cla("b", 1)}))
	s := newDeltaStream(t, c, "egress-1")
	s.subscribe(resource.EndpointType, "a")
	assert.Equal(t, []string{"a"}, names(s.nextAck().Resources))

	require.NoError(t, c.Apply(model.Egress, []Change{cla("b", 2)}))
	s.none()

	s.subscribe(resource.EndpointType, "b")
	assert.Equal(t, []string{"b"}, names(s.nextAck().Resources))
	require.NoError(t, c.Apply(model.Egress, []Change{cla("a", 2), cla("b", 3)}))
	assert.Equal(t, []string{"a", "b"}, names(s.nextAck().Resources))
}

// A gateway reconnecting with the versions it has is sent only what differs,
// whichever process it talked to before: versions derive from content.
func TestDeltaReconnectWithInitialVersions(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 1)}))
	s := newDeltaStream(t, c, "egress-1")
	s.subscribe(resource.ClusterType)
	first := s.next()

	restarted := newTestCache(t)
	require.NoError(t, restarted.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 2)}))
	s2 := newDeltaStream(t, restarted, "egress-1")
	initial := map[string]string{}
	for _, r := range first.Resources {
		initial[r.Name] = r.Version
	}
	initial["gone"] = "x"
	s2.request(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, InitialResourceVersions: initial})
	r := s2.next()
	assert.Equal(t, []string{"b"}, names(r.Resources))
	assert.Equal(t, []string{"gone"}, r.RemovedResources)
}

func TestMarshalOncePerChangedResource(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 1)}))
	require.EqualValues(t, 2, c.marshals.Load())

	streams := make([]*deltaStream, 50)
	for i := range streams {
		streams[i] = newDeltaStream(t, c, "egress-1")
		streams[i].subscribe(resource.ClusterType)
		streams[i].nextAck()
	}
	sotw := make([]*sotwStream, 50)
	for i := range sotw {
		sotw[i] = newSotwStream(t, c, "egress-2")
		sotw[i].request(resource.ClusterType, "")
		sotw[i].ack(sotw[i].next())
	}
	require.EqualValues(t, 2, c.marshals.Load(), "answering watches marshals nothing")

	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("b", 2)}))
	require.EqualValues(t, 3, c.marshals.Load())
	var shared *discovery.Resource
	for _, s := range streams {
		r := s.next()
		require.Len(t, r.Resources, 1)
		if shared == nil {
			shared = r.Resources[0]
		}
		assert.Same(t, shared, r.Resources[0], "every stream gets the same resource")
	}
	for _, s := range sotw {
		r := s.next()
		require.Len(t, r.Resources, 2)
		assert.Same(t, shared.Resource, r.Resources[1], "state of the world shares the delta Any")
	}
}

func TestUnchangedResourcesAreSkipped(t *testing.T) {
	c := newTestCache(t)
	batch := []Change{clusterChange("a", 1), cla("a", 1)}
	require.NoError(t, c.Apply(model.Egress, batch))
	version := c.Version(model.Egress, resource.ClusterType)

	s := newDeltaStream(t, c, "egress-1")
	s.subscribe(resource.ClusterType)
	s.nextAck()
	require.NoError(t, c.Apply(model.Egress, batch))
	s.none()
	assert.Equal(t, version, c.Version(model.Egress, resource.ClusterType))
}

// In one batch, new clusters and endpoints reach a stream before the listener
// that uses them, and a removed cluster only after the listener stopped using
// it.
func TestMakeBeforeBreak(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("old", 1), cla("old", 1), listenerChange("l")}))
	s := newDeltaStream(t, c, "egress-1")
	for _, typ := range []string{resource.ListenerType, resource.ClusterType} {
		s.subscribe(typ)
		s.nextAck()
	}
	s.subscribe(resource.EndpointType, "old", "new")
	s.nextAck()

	require.NoError(t, c.Apply(model.Egress, []Change{
		listenerChange("l2"),
		deleted(resource.ClusterType, "old"),
		deleted(resource.EndpointType, "old"),
		deleted(resource.ListenerType, "l"),
		cla("new", 1),
		clusterChange("new", 1),
	}))

	type step struct {
		typeURL          string
		updated, removed []string
	}
	var got []step
	for len(got) < 5 {
		r := s.nextAck()
		got = append(got, step{r.TypeUrl, names(r.Resources), r.RemovedResources})
	}
	s.none()
	want := []step{
		{resource.ClusterType, []string{"new"}, nil},
		{resource.EndpointType, []string{"new"}, nil},
		{resource.ListenerType, []string{"l2"}, []string{"l"}},
		// Removals wait for the ACK of the additions above, after the listener.
		{resource.ClusterType, nil, []string{"old"}},
		{resource.EndpointType, nil, []string{"old"}},
	}
	assert.Equal(t, want, got)
}

func TestNothingBeforeFirstApply(t *testing.T) {
	c := newTestCache(t)
	s := newDeltaStream(t, c, "ingress-1")
	s.subscribe(resource.ListenerType)
	s.subscribe(resource.ClusterType)
	s.none()

	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("egress-only", 1)}))
	s.none()

	require.NoError(t, c.Apply(model.Ingress, []Change{clusterChange("in", 1)}))
	r := s.nextAck()
	assert.Equal(t, resource.ClusterType, r.TypeUrl)
	assert.Equal(t, []string{"in"}, names(r.Resources))
	r = s.nextAck()
	assert.Equal(t, resource.ListenerType, r.TypeUrl, "an empty wildcard type is answered so Envoy can initialize")
	assert.Empty(t, r.Resources)
}

func TestUnknownNodeGetsNothing(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1)}))
	s := newDeltaStream(t, c, "stranger")
	s.subscribe(resource.ClusterType)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("b", 1)}))
	s.none()

	ss := newSotwStream(t, c, "stranger")
	ss.request(resource.ClusterType, "")
	ss.none()
}

// A node id is the client's choice: one of a megabyte is logged, and
// remembered, by its first 256 bytes and its length, once.
func TestUnknownNodeIsLoggedCut(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	c := New(testRoles, zap.New(core))
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1)}))
	huge := strings.Repeat("n", 1<<20)
	for range 2 {
		s := newDeltaStream(t, c, huge)
		s.subscribe(resource.ClusterType)
		s.none()
	}
	entries := logs.FilterMessage("xDS client is not a known gateway; it gets no resources").All()
	require.Len(t, entries, 1)
	require.Equal(t, strings.Repeat("n", 256)+"… [cut from 1048576 bytes]", entries[0].ContextMap()["node_id"])
	for id := range c.warned {
		require.Less(t, len(id), 300)
	}
}

func TestApplyRejectsBadChangesKeepsTheRest(t *testing.T) {
	c := newTestCache(t)
	err := c.Apply(model.Egress, []Change{
		clusterChange("good", 1),
		{TypeURL: resource.ListenerType, Name: "wrong-type", Resource: clusterChange("x", 1).Resource},
		{TypeURL: resource.ClusterType, Name: ""},
	})
	require.ErrorContains(t, err, `resource is a type.googleapis.com/envoy.config.cluster.v3.Cluster`)
	require.ErrorContains(t, err, `invalid resource name ""`)
	assert.Equal(t, 1, c.Len(model.Egress, resource.ClusterType))
	assert.Equal(t, 0, c.Len(model.Egress, resource.ListenerType))
}

func TestReplace(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 1)}))
	s := newDeltaStream(t, c, "egress-1")
	s.subscribe(resource.ClusterType)
	s.nextAck()
	require.NoError(t, c.Replace(model.Egress, []Change{clusterChange("b", 1), clusterChange("c", 1)}))
	r := s.nextAck()
	assert.Equal(t, []string{"c"}, names(r.Resources))
	assert.Empty(t, r.RemovedResources, "removals come after additions")
	assert.Equal(t, []string{"a"}, s.nextAck().RemovedResources)
}

func TestSotwWildcardAndNamed(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 1), cla("a", 1), cla("b", 1)}))

	s := newSotwStream(t, c, "egress-1")
	s.request(resource.ClusterType, "")
	cds := s.next()
	assert.Len(t, cds.Resources, 2)
	assert.Equal(t, c.Version(model.Egress, resource.ClusterType), cds.VersionInfo)
	s.ack(cds)

	s.request(resource.EndpointType, "", "a")
	eds := s.next()
	assert.Len(t, eds.Resources, 1)
	s.ack(eds)

	require.NoError(t, c.Apply(model.Egress, []Change{cla("b", 2)}))
	s.none()
	require.NoError(t, c.Apply(model.Egress, []Change{cla("a", 2), clusterChange("c", 1)}))
	assert.Len(t, s.next().Resources, 3)
	assert.Len(t, s.next().Resources, 1)
}

// A gateway reconnecting to a restarted agent with the same content is not
// sent the same state again.
func TestSotwVersionIsContent(t *testing.T) {
	a, b := newTestCache(t), newTestCache(t)
	require.NoError(t, a.Apply(model.Egress, []Change{clusterChange("x", 1), clusterChange("y", 1)}))
	require.NoError(t, b.Apply(model.Egress, []Change{clusterChange("y", 1), clusterChange("x", 1)}))
	assert.Equal(t, a.Version(model.Egress, resource.ClusterType), b.Version(model.Egress, resource.ClusterType))

	s := newSotwStream(t, b, "egress-1")
	s.request(resource.ClusterType, a.Version(model.Egress, resource.ClusterType))
	s.none()
}

// sotwStream plays go-control-plane's state-of-the-world server for a stream.
type sotwStream struct {
	t    testing.TB
	c    gcache.ConfigWatcher
	node *core.Node
	out  chan gcache.Response
	subs map[string]*stream.Subscription
}

func newSotwStream(t testing.TB, c gcache.ConfigWatcher, nodeID string) *sotwStream {
	return &sotwStream{t: t, c: c, node: &core.Node{Id: nodeID}, out: make(chan gcache.Response, 16), subs: map[string]*stream.Subscription{}}
}

func (s *sotwStream) request(typeURL, version string, names ...string) {
	s.t.Helper()
	sub, ok := s.subs[typeURL]
	if !ok {
		n := stream.NewSotwSubscription(names, true)
		sub = &n
		s.subs[typeURL] = sub
	} else {
		sub.SetResourceSubscription(names)
	}
	req := &discovery.DiscoveryRequest{Node: s.node, TypeUrl: typeURL, VersionInfo: version, ResourceNames: names}
	_, err := s.c.CreateWatch(req, sub, s.out)
	require.NoError(s.t, err)
}

func (s *sotwStream) next() *discovery.DiscoveryResponse {
	s.t.Helper()
	select {
	case r := <-s.out:
		s.subs[r.GetRequest().TypeUrl].SetReturnedResources(r.GetReturnedResources())
		resp, err := r.GetDiscoveryResponse()
		require.NoError(s.t, err)
		return resp
	default:
		s.t.Fatal("no response")
		return nil
	}
}

func (s *sotwStream) none() {
	s.t.Helper()
	select {
	case r := <-s.out:
		resp, _ := r.GetDiscoveryResponse()
		s.t.Fatalf("unexpected response %v", resp)
	default:
	}
}

func (s *sotwStream) ack(r *discovery.DiscoveryResponse) {
	s.t.Helper()
	var names []string
	for n := range s.subs[r.TypeUrl].SubscribedResources() {
		names = append(names, n)
	}
	s.request(r.TypeUrl, r.VersionInfo, names...)
}

// A synced stream costs the cache no memory per resource: its version map
// holds only the sync marker.
func TestDeltaStreamStateIsConstant(t *testing.T) {
	c := newTestCache(t)
	var batch []Change
	for _, n := range seq("c", 100) {
		batch = append(batch, clusterChange(n, 1))
	}
	require.NoError(t, c.Apply(model.Egress, batch))
	s := newDeltaStream(t, c, "egress-1")
	s.subscribe(resource.ClusterType)
	assert.Len(t, s.nextAck().Resources, 100)
	assert.Len(t, s.subs[resource.ClusterType].ReturnedResources(), 1)

	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("c7", 2), deleted(resource.ClusterType, "c8")}))
	assert.Equal(t, []string{"c7"}, names(s.nextAck().Resources))
	assert.Equal(t, []string{"c8"}, s.nextAck().RemovedResources)
	assert.Len(t, s.subs[resource.ClusterType].ReturnedResources(), 1)
}

// A gateway that does not ACK while more changes pass than the log keeps is
// told to reconnect, and then synced from the versions it reports.
func TestDeltaStreamBehindReconnects(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("keep", 1), clusterChange("gone", 1)}))
	s := newDeltaStream(t, c, "egress-1")
	s.subscribe(resource.ClusterType)
	first := s.next()

	for i := range minLog + 1 {
		require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("churn", int64(i))}))
	}
	require.NoError(t, c.Apply(model.Egress, []Change{deleted(resource.ClusterType, "gone")}))
	_, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{
		Node: s.node, TypeUrl: resource.ClusterType, ResponseNonce: "1",
	}, s.subs[resource.ClusterType], s.out)
	require.ErrorIs(t, err, ErrStreamBehind)

	again := newDeltaStream(t, c, "egress-1")
	initial := map[string]string{}
	for _, r := range first.Resources {
		initial[r.Name] = r.Version
	}
	again.request(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, InitialResourceVersions: initial})
	r := again.next()
	assert.Equal(t, []string{"churn"}, names(r.Resources))
	assert.Equal(t, []string{"gone"}, r.RemovedResources)
}

// Unsubscribing a name while subscribed to everything asks for its current
// state again.
func TestDeltaWildcardUnsubscribeResends(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("a", 1), clusterChange("b", 1)}))
	s := newDeltaStream(t, c, "egress-1")
	s.request(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{"*", "a"}})
	s.nextAck()
	s.request(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNamesUnsubscribe: []string{"a"}})
	assert.Equal(t, []string{"a"}, names(s.next().Resources))
}

// Versions cannot be made to collide: a resource's is its whole sha256,
// and a type's a hash over its sorted (name, version) pairs, not a sum of
// shares that entries a peer controls could cancel out.
func TestVersionsAreWholeHashes(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{clusterChange("x", 1)}))
	v := c.Resources(model.Egress, resource.ClusterType)[0].Version
	require.Len(t, v, 43, "base64 of 32 bytes")

	versions := map[string][]string{}
	for name, changes := range map[string][]Change{
		"x1":    {clusterChange("x", 1)},
		"x1 y1": {clusterChange("x", 1), clusterChange("y", 1)},
		"x1 y2": {clusterChange("x", 1), clusterChange("y", 2)},
		"x2 y1": {clusterChange("x", 2), clusterChange("y", 1)},
		"xy1":   {clusterChange("xy", 1)},
	} {
		c := newTestCache(t)
		require.NoError(t, c.Apply(model.Egress, changes))
		v := c.Version(model.Egress, resource.ClusterType)
		versions[v] = append(versions[v], name)
	}
	require.Len(t, versions, 5, "every content its own version: %v", versions)
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
