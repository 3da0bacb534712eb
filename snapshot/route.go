package snapshot

import (
	"strconv"
	"strings"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// virtualHost, named name, routes every request for domains to cluster up
// with server name sni (upstream.go). A non-empty hostRewrite replaces the
// Host header. Requests time out after timeout (0: never), except streams:
// gRPC and HTTP/2 (streaming) and WebSocket upgrades live on after their
// headers, so neither the route timeout nor the stream idle timeout (5
// minutes by default) cuts them. A connection that could not be made, or
// was refused before the request was sent, is retried on another endpoint
// of the owner's ingress.
func virtualHost(name, up, sni string, domains []string, hostRewrite string, streaming bool, timeout time.Duration) *route.VirtualHost {
	action := func(stream bool) *route.Route_Route {
		a := &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: up},
			Timeout:          durationpb.New(timeout),
			RetryPolicy: &route.RetryPolicy{
				RetryOn:    "connect-failure,refused-stream,reset-before-request",
				NumRetries: wrapperspb.UInt32(2),
			},
		}
		if hostRewrite != "" {
			a.HostRewriteSpecifier = &route.RouteAction_HostRewriteLiteral{HostRewriteLiteral: hostRewrite}
		}
		if stream {
			a.Timeout, a.IdleTimeout = durationpb.New(0), durationpb.New(0)
		}
		return &route.Route_Route{Route: a}
	}
	all := &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}
	vh := &route.VirtualHost{Name: name, Domains: domains}
	// On each route rather than the virtual host: a Consul scope copies
	// the routes (consulScope). The routes count the import's requests
	// (vhost.<name>.route.<name>.upstream_rq_*: totals, codes, time,
	// timeouts, retries), which its cluster, its upstream's, no longer
	// does alone: about 2 KB of Envoy's heap per import (Envoy 1.40).
	state := sniRouteConfig(sni)
	if streaming {
		vh.Routes = []*route.Route{{Name: name, Match: all, Action: action(true), TypedPerFilterConfig: state, StatPrefix: name}}
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
	vh.Routes = []*route.Route{
		{Name: name, Match: upgrade, Action: action(true), TypedPerFilterConfig: state, StatPrefix: name},
		{Name: name, Match: all, Action: action(false), TypedPerFilterConfig: state, StatPrefix: name},
	}
	return vh
}

// envoyRequestHeaders are the x-envoy-* request headers Envoy acts on or
// adds. A workload may send them, and the egress gateway must neither act
// on them (a filter removes them before the router reads them) nor pass
// them to another mesh's gateways, which would act on them too (retries,
// timeouts) or learn about this mesh from them. (The router adds none of
// its own: suppress_envoy_headers.)
var envoyRequestHeaders = []string{
	"x-envoy-attempt-count",
	"x-envoy-decorator-operation",
	"x-envoy-downstream-service-cluster",
	"x-envoy-downstream-service-node",
	"x-envoy-expected-rq-timeout-ms",
	"x-envoy-external-address",
	"x-envoy-force-trace",
	"x-envoy-hedge-on-per-try-timeout",
	"x-envoy-internal",
	"x-envoy-ip-tags",
	"x-envoy-is-timeout-retry",
	"x-envoy-max-retries",
	"x-envoy-original-dst-host",
	"x-envoy-original-path",
	"x-envoy-retry-grpc-on",
	"x-envoy-retry-on",
	"x-envoy-upstream-alt-stat-name",
	"x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-upstream-rq-timeout-alt-response",
	"x-envoy-upstream-rq-timeout-ms",
	"x-envoy-upstream-stream-duration-ms",
}

// EgressScope is the routing scope of one host-routed instance: its
// virtual host, in a route configuration of its own, under the key the
// egress HTTP listener of port computes for a request to host (ScopeKey).
// One scope per instance makes a change to one service a change to one
// resource, whatever the size of the catalog.
func EgressScope(host string, port uint32, vh *route.VirtualHost) *route.ScopedRouteConfiguration {
	return &route.ScopedRouteConfiguration{
		Name: vh.GetName(),
		Key: &route.ScopedRouteConfiguration_Key{Fragments: []*route.ScopedRouteConfiguration_Key_Fragment{{
			Type: &route.ScopedRouteConfiguration_Key_Fragment_StringKey{StringKey: ScopeKey(host, port)},
		}}},
		RouteConfiguration: scopeRoutes(vh.GetName(), vh),
	}
}

// scopeRoutes is the route configuration of a scope, named name. Envoy
// does not check that its cluster exists: a scope and its cluster arrive
// in one update, and Envoy would refuse the scope while the cluster still
// warms (waiting for its endpoints). A request in that moment gets a 503.
func scopeRoutes(name string, vh *route.VirtualHost) *route.RouteConfiguration {
	return &route.RouteConfiguration{Name: name, VirtualHosts: []*route.VirtualHost{vh}, ValidateClusters: wrapperspb.Bool(false)}
}

// ScopeKey is the scope key of requests for host on the egress HTTP
// listener of port: the host lower-cased without a port, and the
// listener's port, so that scopes, which Envoy shares between every
// listener of one scoped routes name, stay apart per port.
func ScopeKey(host string, port uint32) string {
	return strings.ToLower(host) + ":" + strconv.FormatUint(uint64(port), 10)
}

// scopeHeader carries a request's scope key from the egress listener's
// Lua filter to the scope selection; it does not leave the gateway.
const scopeHeader = "x-meshfed-scope"
