package snapshot

import (
	"math"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	connectTimeout = 5 * time.Second
	// connectionBufferLimit bounds what Envoy buffers per connection, on
	// listeners and clusters alike: 32 KiB, as Envoy's guidance for edge
	// proxies has it, instead of 1 MiB.
	connectionBufferLimit = 32 << 10
	// unlimited stands for "no circuit breaker": a gateway carries a whole
	// mesh's calls to a service, so Envoy's default of 1,024 connections
	// or requests per cluster would cap it (Istio sets the same).
	unlimited = math.MaxUint32
	// httpProtocolOptionsKey is the extension name Envoy reads upstream HTTP
	// protocol options under.
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// upstreamCluster is cluster name over hps, and its ClusterLoadAssignment
// when it has one of its own.
//
// Envoy resolves no DNS names in EDS: an LbEndpoint address must be an IP.
// When every address is an IP the cluster is EDS over ADS and its endpoints
// are a separate ClusterLoadAssignment, so an endpoint change replaces only
// that; with inline, it is STATIC with its load assignment inline. When
// some address is a DNS name (Hamlet endpoints may be FQDNs, and so may
// local ones), the cluster is STRICT_DNS with its load assignment inline,
// and Envoy resolves and re-resolves every address itself (IP literals
// resolve to themselves). An endpoint change of a cluster with its load
// assignment inline replaces the cluster, and the returned
// ClusterLoadAssignment is nil.
//
// An import's endpoints are its owner's ingress addresses, which rarely
// change, so its cluster is inline: an EDS cluster waits for its
// assignment before it serves, and at 10,000 imports on 4 Envoys (make
// bench-envoy) every one of them waited out Envoy's 15 s initial fetch
// timeout in the cold start (40,000 init_fetch_timeout, 36.7 s), where
// inline clusters serve at once (0, 30.6 s) and cost 9 KB less each.
func upstreamCluster(name string, hps []hostPort, inline bool) (*cluster.Cluster, *endpoint.ClusterLoadAssignment) {
	c := &cluster.Cluster{
		Name:                          name,
		ConnectTimeout:                durationpb.New(connectTimeout),
		CircuitBreakers:               circuitBreakers(),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
	}
	cla := loadAssignment(name, hps)
	switch {
	case anyHostname(hps):
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS}
		c.LoadAssignment = cla
		return c, nil
	case inline:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}
		c.LoadAssignment = cla
		return c, nil
	}
	c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_EDS}
	c.EdsClusterConfig = &cluster.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name}
	return c, cla
}

// http2Options makes a cluster speak HTTP/2 to its upstream.
func http2Options() map[string]*anypb.Any {
	return map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(&httpopts.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &core.Http2ProtocolOptions{},
				},
			},
		},
	})}
}

// circuitBreakers lift Envoy's per-cluster limits (1,024 connections,
// pending and active requests, 3 retries), and track what remains so that
// the gauges show how close a cluster is to a limit an operator sets.
func circuitBreakers() *cluster.CircuitBreakers {
	return &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{{
		MaxConnections:     wrapperspb.UInt32(unlimited),
		MaxPendingRequests: wrapperspb.UInt32(unlimited),
		MaxRequests:        wrapperspb.UInt32(unlimited),
		MaxRetries:         wrapperspb.UInt32(unlimited),
		TrackRemaining:     true,
	}}}
}

// outlierDetection ejects an endpoint of an owner's ingress that keeps
// failing locally (connections refused, reset or timed out), so that the
// other endpoints take the traffic. Answers (5xx, gateway errors) eject
// nothing: they come from one service behind the ingress, and the
// cluster carries every service of its upstream (UpstreamName), which a
// broken one must not cut off.
func outlierDetection() *cluster.OutlierDetection {
	return &cluster.OutlierDetection{
		SplitExternalLocalOriginErrors:         true,
		ConsecutiveLocalOriginFailure:          wrapperspb.UInt32(5),
		EnforcingConsecutiveLocalOriginFailure: wrapperspb.UInt32(100),
		EnforcingConsecutive_5Xx:               wrapperspb.UInt32(0),
		EnforcingConsecutiveGatewayFailure:     wrapperspb.UInt32(0),
		EnforcingSuccessRate:                   wrapperspb.UInt32(0),
		EnforcingLocalOriginSuccessRate:        wrapperspb.UInt32(0),
		Interval:                               durationpb.New(5 * time.Second),
		BaseEjectionTime:                       durationpb.New(30 * time.Second),
		MaxEjectionPercent:                     wrapperspb.UInt32(50),
	}
}
