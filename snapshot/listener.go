package snapshot

import (
	"strconv"
	"time"

	mutation "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	headermutation "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	lua "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	upstreamcodec "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshfed/meshfed/model"
)

// tlsTransport is the transport protocol tls_inspector reports for TLS.
const tlsTransport = "tls"

// egressHTTPListener is the egress listener of the HTTP, HTTP2 and GRPC
// imports on one service port, as Istio serves them: it binds that port,
// so that a workload calling http://<name>:<port>/ arrives at it once the
// name resolves to the gateway, and an HTTP connection manager (HTTP/1.1
// and h2c, detected) routes by Host.
//
// Routing is scoped (SRDS): each instance is a scope of its own
// (EgressScope), fetched over ADS, so a change to one service sends that
// service's routing only. Every egress listener names the same scoped
// routes, so Envoy keeps one table of scopes for all of them; a Lua filter
// computes each request's key (ScopeKey), since Envoy matches scope keys
// exactly while host names are case-insensitive, and adds the listener's
// port. A request for a host no scope has gets a 404, as from a route
// table without its virtual host.
func egressHTTPListener(in *view, port uint32) *listener.Listener {
	name := EgressHTTPName(port)
	m := &hcm.HttpConnectionManager{
		StatPrefix:     name,
		CodecType:      hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_ScopedRoutes{ScopedRoutes: egressScopes()},
		HttpFilters: []*hcm.HttpFilter{{
			Name:       headerMutation,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(removeHeaders(envoyRequestHeaders...))},
		}, {
			Name:       wellknown.Lua,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(scopeKeyFilter(in.Consul, port))},
		}, sniHTTPFilter(), {
			Name:       wellknown.Router,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(egressRouter())},
		}},
		UpgradeConfigs: []*hcm.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
		// A fully qualified name (payments.mesh-b.example.) is the name.
		StripTrailingHostDot: true,
		// Streams disable it on their routes (route.go).
		StreamIdleTimeout: optionalDuration(in.StreamIdleTimeout),
		AccessLog:         accessLogs(model.Egress, requestLogFields),
	}
	return &listener.Listener{
		Name:                          name,
		Address:                       socketAddress(in.Gateways.Egress.Address, port),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
		FilterChains: []*listener.FilterChain{{
			Filters: withSources(m.StatPrefix, in.EgressSources, &listener.Filter{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(m)},
			}),
		}},
	}
}

// EgressScopesName names the scoped routes of every egress HTTP listener.
const EgressScopesName = "egress/http"

func egressScopes() *hcm.ScopedRoutes {
	return &hcm.ScopedRoutes{
		Name: EgressScopesName,
		ScopeKeyBuilder: &hcm.ScopedRoutes_ScopeKeyBuilder{Fragments: []*hcm.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder{{
			Type: &hcm.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor_{
				HeaderValueExtractor: &hcm.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor{
					Name:        scopeHeader,
					ExtractType: &hcm.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor_Index{Index: 0},
				},
			},
		}}},
		RdsConfigSource: ads(),
		ConfigSpecifier: &hcm.ScopedRoutes_ScopedRds{ScopedRds: &hcm.ScopedRds{ScopedRdsConfigSource: ads()}},
	}
}

// scopeKeyFilter sets scopeHeader to the request's ScopeKey on the
// listener of port, replacing any the workload sent; with Consul, a
// Consul name of an import keys the import's Consul scope. A filter that
// changes headers clears the route cache, so the router selects the scope
// again with the key.
func scopeKeyFilter(consul *Consul, port uint32) *lua.Lua {
	script := `function envoy_on_request(handle)
  local host = handle:headers():get(":authority") or ""
  host = string.lower((string.gsub(host, ":%d*$", "")))
` + consulLuaKey(consul) + `  handle:headers():replace("` + scopeHeader + `", host .. ":` + strconv.FormatUint(uint64(port), 10) + `")
end
`
	return &lua.Lua{DefaultSourceCode: &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: script}}}
}

const headerMutation = "envoy.filters.http.header_mutation"

// removeHeaders is a header mutation filter removing names from requests.
func removeHeaders(names ...string) *headermutation.HeaderMutation {
	m := &headermutation.Mutations{}
	for _, n := range names {
		m.RequestMutations = append(m.RequestMutations, &mutation.HeaderMutation{Action: &mutation.HeaderMutation_Remove{Remove: n}})
	}
	return &headermutation.HeaderMutation{Mutations: m}
}

// egressRouter sends no x-envoy-* header of this gateway's to the owner,
// nor the scope key: suppress_envoy_headers stops all but
// x-envoy-expected-rq-timeout-ms, which the router adds to the upstream
// request after every downstream filter ran, and the scope key must stay
// until the router selected the route; an upstream filter removes both.
func egressRouter() *router.Router {
	return &router.Router{
		SuppressEnvoyHeaders: true,
		UpstreamHttpFilters: []*hcm.HttpFilter{
			{Name: headerMutation, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(removeHeaders("x-envoy-expected-rq-timeout-ms", scopeHeader))}},
			{Name: "envoy.filters.http.upstream_codec", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&upstreamcodec.UpstreamCodec{})}},
		},
	}
}

// tcpListener is a dedicated egress listener, named name, proxying every
// connection to cluster up with server name sni.
func tcpListener(in *view, name string, port uint32, up, sni string) *listener.Listener {
	return &listener.Listener{
		Name:                          name,
		Address:                       socketAddress(in.Gateways.Egress.Address, port),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
		FilterChains:                  []*listener.FilterChain{{Filters: withSources(name, in.EgressSources, sniFilter(sni), egressTCPProxy(name, up))}},
		AccessLog:                     accessLogs(model.Egress, connectionLogFields),
	}
}

// tcpProxy proxies to cluster name, and counts under it.
func tcpProxy(name string) *listener.Filter {
	return tcpProxyFilter(&tcpproxy.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: name}})
}

// egressTCPProxy proxies to the owner's ingress through cluster up,
// trying other endpoints when a connection cannot be made, and counts
// under name.
func egressTCPProxy(name, up string) *listener.Filter {
	return tcpProxyFilter(&tcpproxy.TcpProxy{
		StatPrefix:         name,
		ClusterSpecifier:   &tcpproxy.TcpProxy_Cluster{Cluster: up},
		MaxConnectAttempts: wrapperspb.UInt32(3),
	})
}

func tcpProxyFilter(cfg *tcpproxy.TcpProxy) *listener.Filter {
	return &listener.Filter{Name: wellknown.TCPProxy, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

func tlsInspector() *listener.ListenerFilter {
	return &listener.ListenerFilter{
		Name:       wellknown.TLSInspector,
		ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})},
	}
}

// optionalDuration is d, or nil for 0: Envoy's default.
func optionalDuration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}
