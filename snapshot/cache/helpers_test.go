package cache

import (
	"fmt"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshfed/meshfed/model"
)

func testRoles(id string) (model.Role, bool) {
	switch id {
	case "egress-1", "egress-2":
		return model.Egress, true
	case "ingress-1":
		return model.Ingress, true
	}
	return "", false
}

func newTestCache(t *testing.T) *Cache {
	return New(testRoles, zaptest.NewLogger(t))
}

func clusterChange(name string, timeoutSeconds int64) Change {
	return Change{TypeURL: resource.ClusterType, Name: name, Resource: &cluster.Cluster{
		Name:           name,
		ConnectTimeout: &durationpb.Duration{Seconds: timeoutSeconds},
	}}
}

func cla(name string, port uint32) Change {
	return Change{TypeURL: resource.EndpointType, Name: name, Resource: &endpoint.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
					Address: "10.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
				}}},
			}},
		}}}},
	}}
}

func listenerChange(name string) Change {
	return Change{TypeURL: resource.ListenerType, Name: name, Resource: &listener.Listener{Name: name}}
}

func deleted(typeURL, name string) Change { return Change{TypeURL: typeURL, Name: name} }

// deltaStream plays the part of go-control-plane's delta server for one
// stream: one subscription and at most one watch per type, a shared channel.
type deltaStream struct {
	t      testing.TB
	c      gcache.ConfigWatcher
	node   *core.Node
	out    chan gcache.DeltaResponse
	subs   map[string]*stream.Subscription
	cancel map[string]func()
}

func newDeltaStream(t testing.TB, c gcache.ConfigWatcher, nodeID string) *deltaStream {
	return &deltaStream{
		t: t, c: c, node: &core.Node{Id: nodeID},
		out:    make(chan gcache.DeltaResponse, 32),
		subs:   map[string]*stream.Subscription{},
		cancel: map[string]func(){},
	}
}

func (s *deltaStream) request(req *discovery.DeltaDiscoveryRequest) {
	s.t.Helper()
	req.Node = s.node
	sub, ok := s.subs[req.TypeUrl]
	if !ok {
		n := stream.NewDeltaSubscription(req.ResourceNamesSubscribe, req.ResourceNamesUnsubscribe, req.InitialResourceVersions, true)
		sub = &n
		s.subs[req.TypeUrl] = sub
	} else {
		if cancel := s.cancel[req.TypeUrl]; cancel != nil {
			cancel()
		}
		sub.UpdateResourceSubscriptions(req.ResourceNamesSubscribe, req.ResourceNamesUnsubscribe)
	}
	cancel, err := s.c.CreateDeltaWatch(req, sub, s.out)
	require.NoError(s.t, err)
	s.cancel[req.TypeUrl] = cancel
}

func (s *deltaStream) subscribe(typeURL string, names ...string) {
	s.t.Helper()
	s.request(&discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names})
}

// next returns the next response and records it as the server does.
func (s *deltaStream) next() *discovery.DeltaDiscoveryResponse {
	s.t.Helper()
	select {
	case r := <-s.out:
		resp, err := r.GetDeltaDiscoveryResponse()
		require.NoError(s.t, err)
		s.subs[resp.TypeUrl].SetReturnedResources(r.GetReturnedResources())
		s.cancel[resp.TypeUrl] = nil
		return resp
	default:
		s.t.Fatal("no response")
		return nil
	}
}

func (s *deltaStream) none() {
	s.t.Helper()
	select {
	case r := <-s.out:
		resp, _ := r.GetDeltaDiscoveryResponse()
		s.t.Fatalf("unexpected response %v", resp)
	default:
	}
}

func (s *deltaStream) ack(typeURL string) {
	s.t.Helper()
	s.request(&discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: "n"})
}

// nextAck returns the next response and ACKs it.
func (s *deltaStream) nextAck() *discovery.DeltaDiscoveryResponse {
	s.t.Helper()
	r := s.next()
	s.ack(r.TypeUrl)
	return r
}

func names(rs []*discovery.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}
