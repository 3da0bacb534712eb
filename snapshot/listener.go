package snapshot

import (
	"strconv"
	"time"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	mutation "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	accesslogdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	headermutation "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	lua "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	upstreamcodec "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	snicluster "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/sni_cluster/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshfed/meshfed/model"
)

// tlsTransport is the transport protocol tls_inspector reports for TLS.
const tlsTransport = "tls"

// EgressHTTPListener is the egress listener of the HTTP, HTTP2 and GRPC
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
func EgressHTTPListener(in *Input, port uint32) *listener.Listener {
	name := EgressHTTPName(port)
	m := &hcm.HttpConnectionManager{
		StatPrefix:     "egress-http-" + strconv.FormatUint(uint64(port), 10),
		CodecType:      hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_ScopedRoutes{ScopedRoutes: egressScopes()},
		HttpFilters: []*hcm.HttpFilter{{
			Name:       headerMutation,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(removeHeaders(envoyRequestHeaders...))},
		}, {
			Name:       wellknown.Lua,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(scopeKeyFilter(port))},
		}, {
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
// listener of port, replacing any the workload sent. A filter that changes
// headers clears the route cache, so the router selects the scope again
// with the key.
func scopeKeyFilter(port uint32) *lua.Lua {
	script := `function envoy_on_request(handle)
  local host = handle:headers():get(":authority") or ""
  host = string.gsub(host, ":%d*$", "")
  handle:headers():replace("` + scopeHeader + `", string.lower(host) .. ":` + strconv.FormatUint(uint64(port), 10) + `")
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

// tcpListener is a dedicated egress listener proxying every connection to
// cluster name (the listener shares its name).
func tcpListener(in *Input, name string, port uint32) *listener.Listener {
	return &listener.Listener{
		Name:                          name,
		Address:                       socketAddress(in.Gateways.Egress.Address, port),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
		FilterChains:                  []*listener.FilterChain{{Filters: withSources(name, in.EgressSources, egressTCPProxy(name))}},
		AccessLog:                     accessLogs(model.Egress, connectionLogFields),
	}
}

// tcpProxy proxies to cluster name, and counts under it.
func tcpProxy(name string) *listener.Filter {
	return tcpProxyFilter(&tcpproxy.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: name}})
}

// egressTCPProxy proxies to the owner's ingress through cluster name,
// trying other endpoints when a connection cannot be made.
func egressTCPProxy(name string) *listener.Filter {
	return tcpProxyFilter(&tcpproxy.TcpProxy{
		StatPrefix:         name,
		ClusterSpecifier:   &tcpproxy.TcpProxy_Cluster{Cluster: name},
		MaxConnectAttempts: wrapperspb.UInt32(3),
	})
}

// maxEarlyData bounds what a tcp_proxy that waits for the TLS handshake
// holds of a caller's first bytes: a request's headers, not a flood.
const maxEarlyData = 64 << 10

// tlsTerminatingProxy proxies to cluster name once the caller's TLS
// handshake completed, never before: Envoy's default opens the upstream
// connection on the ClientHello, so a caller the handshake then refuses
// would still have made the local service accept a connection (and hear
// the greeting of a server-first protocol).
func tlsTerminatingProxy(name string) *listener.Filter {
	return tcpProxyFilter(&tcpproxy.TcpProxy{
		StatPrefix:          name,
		ClusterSpecifier:    &tcpproxy.TcpProxy_Cluster{Cluster: name},
		UpstreamConnectMode: tcpproxy.UpstreamConnectMode_ON_DOWNSTREAM_TLS_HANDSHAKE,
		MaxEarlyDataBytes:   wrapperspb.UInt32(maxEarlyData),
		// A line when the caller is connected upstream, not only when the
		// connection ends (the listener logs that): a gRPC stream lives
		// for hours.
		AccessLog:        accessLogs(model.Ingress, connectionLogFields, accesslogdata.AccessLogType_TcpUpstreamConnected),
		AccessLogOptions: &tcpproxy.TcpProxy_TcpAccessLogOptions{FlushAccessLogOnConnected: true},
	})
}

func tcpProxyFilter(cfg *tcpproxy.TcpProxy) *listener.Filter {
	return &listener.Filter{Name: wellknown.TCPProxy, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

// IngressListener is the ingress TLS listener, the same whatever is
// exported: a TLS inspector reads the SNI, and the connection goes to the
// cluster of that name (sni_cluster), which leads to the internal listener
// of the export port that has it (IngressResources). Envoy 1.40 cannot send
// a listener one filter chain at a time, so a chain per export here would
// make every export change resend every export's chain.
//
// A connection with an SNI nobody exports is closed (no such cluster),
// one without an SNI too (unknownServerName has no endpoint), and one that
// is not TLS matches no chain. This listener logs only those; the export
// listeners log the rest, with the caller's identity.
func IngressListener(in *Input) *listener.Listener {
	log := accessLogs(model.Ingress, connectionLogFields)
	log[0].Filter = &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_ResponseFlagFilter{
		ResponseFlagFilter: &accesslog.ResponseFlagFilter{Flags: []string{"NC", "UH", "NR"}},
	}}
	return &listener.Listener{
		Name:                          IngressTLSName,
		Address:                       socketAddress(in.Gateways.Ingress.Address, in.Gateways.Ingress.Port),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
		ListenerFilters:               []*listener.ListenerFilter{tlsInspector()},
		FilterChains: []*listener.FilterChain{{
			Name:             IngressTLSName,
			FilterChainMatch: &listener.FilterChainMatch{TransportProtocol: tlsTransport},
			Filters: []*listener.Filter{
				{Name: sniCluster, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(&snicluster.SniCluster{})}},
				tcpProxyFilter(&tcpproxy.TcpProxy{StatPrefix: IngressTLSName, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: UnknownServerName}}),
			},
		}},
		AccessLog: log,
	}
}

const sniCluster = "envoy.filters.network.sni_cluster"

func tlsInspector() *listener.ListenerFilter {
	return &listener.ListenerFilter{
		Name:       wellknown.TLSInspector,
		ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})},
	}
}

// exportListener is the internal listener of an export port, reached
// through its SNI's cluster only: it holds chain, and logs every
// connection when it ends, refused callers included, with the SNI (its own
// TLS inspector reads it again) and the caller's identity.
func exportListener(name string, chain *listener.FilterChain) *listener.Listener {
	return &listener.Listener{
		Name:                          name,
		ListenerSpecifier:             &listener.Listener_InternalListener{InternalListener: &listener.Listener_InternalListenerConfig{}},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
		ListenerFilters:               []*listener.ListenerFilter{tlsInspector()},
		FilterChains:                  []*listener.FilterChain{chain},
		AccessLog:                     accessLogs(model.Ingress, connectionLogFields),
	}
}

// optionalDuration is d, or nil for 0: Envoy's default.
func optionalDuration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}
