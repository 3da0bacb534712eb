package snapshot

import (
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

const (
	connectTimeout = 5 * time.Second
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
// that. When some address is a DNS name (Hamlet endpoints may be FQDNs, and
// so may local ones), the cluster is STRICT_DNS with its load assignment
// inline, and Envoy resolves and re-resolves every address itself (IP
// literals resolve to themselves); an endpoint change then replaces the
// cluster, and the returned ClusterLoadAssignment is nil.
func upstreamCluster(name string, hps []hostPort) (*cluster.Cluster, *endpoint.ClusterLoadAssignment) {
	c := &cluster.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(connectTimeout),
	}
	cla := loadAssignment(name, hps)
	if anyHostname(hps) {
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS}
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
