package snapshot

import (
	"cmp"
	"slices"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// virtualHost routes every request for domains to cluster name (the virtual
// host shares the cluster's name). A non-empty hostRewrite replaces the Host
// header. streaming turns off the route timeout (15 s by default), which
// would cut gRPC and HTTP/2 streams; an HTTP/1.1 host gets it turned off
// for WebSocket upgrades only, whose connection lives on after the 101.
func virtualHost(name string, domains []string, hostRewrite string, streaming bool) *route.VirtualHost {
	action := func(timeout bool) *route.Route_Route {
		a := &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: name}}
		if hostRewrite != "" {
			a.HostRewriteSpecifier = &route.RouteAction_HostRewriteLiteral{HostRewriteLiteral: hostRewrite}
		}
		if !timeout {
			a.Timeout = durationpb.New(0)
		}
		return &route.Route_Route{Route: a}
	}
	all := &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}
	vh := &route.VirtualHost{Name: name, Domains: domains}
	if streaming {
		vh.Routes = []*route.Route{{Match: all, Action: action(false)}}
		return vh
	}
	upgrade := &route.RouteMatch{
		PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"},
		Headers: []*route.HeaderMatcher{{
			Name: "upgrade",
			HeaderMatchSpecifier: &route.HeaderMatcher_StringMatch{StringMatch: &matcher.StringMatcher{
				MatchPattern: &matcher.StringMatcher_Exact{Exact: "websocket"}, IgnoreCase: true,
			}},
		}},
	}
	vh.Routes = []*route.Route{{Match: upgrade, Action: action(false)}, {Match: all, Action: action(true)}}
	return vh
}

// EgressRouteConfiguration is the route configuration of the egress HTTP
// listener of port: vhosts sorted by name. It does not modify vhosts.
func EgressRouteConfiguration(port uint32, vhosts []*route.VirtualHost) *route.RouteConfiguration {
	sorted := slices.Clone(vhosts)
	slices.SortFunc(sorted, func(a, b *route.VirtualHost) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return &route.RouteConfiguration{Name: EgressHTTPName(port), VirtualHosts: sorted}
}
