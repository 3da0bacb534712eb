package snapshot

import (
	"cmp"
	"slices"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// virtualHost routes every request for domains to cluster name (the virtual
// host shares the cluster's name). A non-empty hostRewrite replaces the Host
// header. streaming turns off the route timeout (15 s by default), which
// would cut gRPC and HTTP/2 streams.
func virtualHost(name string, domains []string, hostRewrite string, streaming bool) *route.VirtualHost {
	action := &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: name}}
	if hostRewrite != "" {
		action.HostRewriteSpecifier = &route.RouteAction_HostRewriteLiteral{HostRewriteLiteral: hostRewrite}
	}
	if streaming {
		action.Timeout = durationpb.New(0)
	}
	return &route.VirtualHost{
		Name:    name,
		Domains: domains,
		Routes: []*route.Route{{
			Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_Route{Route: action},
		}},
	}
}

// EgressRouteConfiguration is the route configuration of the egress HTTP
// listener of port: vhosts sorted by name. It does not modify vhosts.
func EgressRouteConfiguration(port uint32, vhosts []*route.VirtualHost) *route.RouteConfiguration {
	sorted := slices.Clone(vhosts)
	slices.SortFunc(sorted, func(a, b *route.VirtualHost) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return &route.RouteConfiguration{Name: EgressHTTPName(port), VirtualHosts: sorted}
}
