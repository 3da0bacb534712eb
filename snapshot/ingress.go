package snapshot

import (
	"cmp"
	"slices"

	xdscore "github.com/cncf/xds/go/xds/core/v3"
	xdsmatcher "github.com/cncf/xds/go/xds/type/matcher/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	accesslogdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	setfilterstate "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/set_filter_state/v3"
	setfilterstatenet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/set_filter_state/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	networkinputs "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/common_inputs/network/v3"
	internalupstream "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/internal_upstream/v3"
	rawbuffer "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshfed/meshfed/model"
)

// The ingress gateway.
//
// One TLS listener (IngressTLSName) takes every consumer's connection. A
// server name selects one of its filter chains through an exact map of the
// exported SNIs, and nothing else: a name the map lacks gets no chain, and
// the connection is closed before any byte of it is read. An SNI is bytes
// a caller chooses, so it never names a resource itself.
//
// Terminate mode: every export whose consumers are the same peers shares
// one chain, the consumer group's (ConsumersChainName). It ends the mutual
// TLS: the SPIFFE validator of the group's trust domains authenticates the
// caller, the SAN matchers of the group's callers authorize it, both
// during the handshake. Only then is a byte forwarded, in clear, to the
// internal router listener (IngressRouterName) with the SNI and the
// caller's identity in the connection's filter state; the router's own
// exact map takes the SNI to the export port's chain, which proxies to the
// local endpoints. Envoy builds an SSL context for every chain that holds
// TLS, and shares none between chains (about 24 KB each): one per group
// instead of one per export port is most of what an export costs less.
// TLS ends on the ordinary listener, never on an internal one: Envoy
// resets a connection whose TLS ends on an internal listener after the
// caller half-closes it, and the answer is lost.
//
// Passthrough mode: the export port's own chain on the TLS listener
// proxies the raw TLS stream to the local endpoints, which authenticate
// the caller themselves.
//
// Both maps hold every exported SNI, so an export's change sends the two
// listeners whole; Envoy rebuilds the chains that changed only, and drains
// the connections of those alone.

// IngressRoute is how the ingress gateway reaches one exported port.
type IngressRoute struct {
	// SNI is the server name the port is reached by.
	SNI string
	// Chain is the port's filter chain, named as its cluster: on the
	// router in terminate mode, on the TLS listener in passthrough mode.
	Chain *listener.FilterChain
	// Consumers are the export's consumer peers, sorted by name, whose
	// group chain takes SNI on the TLS listener; nil in passthrough mode.
	Consumers []model.Peer
}

// SNIRoute is a filter chain a listener picks by the exact server name.
type SNIRoute struct {
	SNI   string
	Chain *listener.FilterChain
}

// Filter state keys the TLS listener sets for the router, which sees
// neither the caller's TLS nor its address.
const (
	serverNameKey = "meshfed.sni"
	callerKey     = "meshfed.peer"
	downstreamKey = "meshfed.downstream"
)

// ingressListeners are the ingress gateway's TLS listener and, when an
// export terminates TLS, the router listener and the cluster leading to
// it, all from routes (whose SNIs are unique); none without routes.
func ingressListeners(in *view, routes []IngressRoute) ([]*listener.Listener, []*cluster.Cluster) {
	if len(routes) == 0 {
		return nil, nil
	}
	tlsMap := make(map[string]*xdsmatcher.Matcher_OnMatch, len(routes))
	var tlsChains, routerChains []*listener.FilterChain
	routerMap := map[string]*xdsmatcher.Matcher_OnMatch{}
	groups := map[string][]model.Peer{}
	for _, r := range routes {
		if r.Consumers == nil {
			tlsChains = append(tlsChains, r.Chain)
			tlsMap[r.SNI] = chainAction(r.Chain.GetName())
			continue
		}
		g := ConsumersChainName(r.Consumers)
		groups[g] = r.Consumers
		tlsMap[r.SNI] = chainAction(g)
		routerChains = append(routerChains, r.Chain)
		routerMap[r.SNI] = chainAction(r.Chain.GetName())
	}
	for name, peers := range groups {
		tlsChains = append(tlsChains, consumersChain(name, peers))
	}
	byName := func(a, b *listener.FilterChain) int { return cmp.Compare(a.GetName(), b.GetName()) }
	slices.SortFunc(tlsChains, byName)
	tls := &listener.Listener{
		Name:                          IngressTLSName,
		Address:                       socketAddress(in.Gateways.Ingress.Address, in.Gateways.Ingress.Port),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
		ListenerFilters:               []*listener.ListenerFilter{tlsInspector()},
		FilterChains:                  tlsChains,
		FilterChainMatcher:            exactMatcher(&networkinputs.ServerNameInput{}, tlsMap),
		AccessLog:                     accessLogs(model.Ingress, ingressLogFields),
	}
	if len(routerChains) == 0 {
		return []*listener.Listener{tls}, nil
	}
	slices.SortFunc(routerChains, byName)
	router := &listener.Listener{
		Name:                          IngressRouterName,
		ListenerSpecifier:             &listener.Listener_InternalListener{InternalListener: &listener.Listener_InternalListenerConfig{}},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
		FilterChains:                  routerChains,
		FilterChainMatcher:            exactMatcher(&networkinputs.FilterStateInput{Key: serverNameKey}, routerMap),
		AccessLog:                     accessLogs(model.Ingress, routerLogFields),
	}
	return []*listener.Listener{tls, router}, []*cluster.Cluster{routerCluster()}
}

// exactMatcher picks a filter chain by the exact value of input: the chain
// that m names for it, none for a value m lacks.
func exactMatcher(input proto.Message, m map[string]*xdsmatcher.Matcher_OnMatch) *xdsmatcher.Matcher {
	return &xdsmatcher.Matcher{MatcherType: &xdsmatcher.Matcher_MatcherTree_{MatcherTree: &xdsmatcher.Matcher_MatcherTree{
		Input:    &xdscore.TypedExtensionConfig{Name: "input", TypedConfig: mustAny(input)},
		TreeType: &xdsmatcher.Matcher_MatcherTree_ExactMatchMap{ExactMatchMap: &xdsmatcher.Matcher_MatcherTree_MatchMap{Map: m}},
	}}}
}

// chainAction selects the filter chain called name.
func chainAction(name string) *xdsmatcher.Matcher_OnMatch {
	return &xdsmatcher.Matcher_OnMatch{OnMatch: &xdsmatcher.Matcher_OnMatch_Action{Action: &xdscore.TypedExtensionConfig{
		Name:        name,
		TypedConfig: mustAny(wrapperspb.String(name)),
	}}}
}

// consumersChain ends the mutual TLS of the callers of peers, and hands
// each connection, once the handshake is done, to the router with its SNI,
// the caller's identity and address. Its access log has a line as soon as
// a caller is in, not only when the connection ends: a gRPC stream lives
// for hours.
func consumersChain(name string, peers []model.Peer) *listener.FilterChain {
	tds := make([]string, 0, len(peers))
	for _, p := range peers {
		tds = append(tds, p.TrustDomain)
	}
	slices.Sort(tds)
	state := &setfilterstatenet.Config{
		OnNewConnection: []*setfilterstate.FilterStateValue{
			filterState(serverNameKey, "%REQUESTED_SERVER_NAME%"),
			filterState(downstreamKey, "%DOWNSTREAM_REMOTE_ADDRESS%"),
		},
		OnDownstreamTlsHandshake: []*setfilterstate.FilterStateValue{filterState(callerKey, "%DOWNSTREAM_PEER_URI_SAN%")},
	}
	return &listener.FilterChain{
		Name:            name,
		TransportSocket: downstreamTLS(ValidatorSecretName(slices.Compact(tds)), callerSANs(peers)),
		Filters: []*listener.Filter{
			{Name: setFilterState, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(state)}},
			tcpProxyFilter(&tcpproxy.TcpProxy{
				StatPrefix:       name,
				ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: IngressRouterName},
				// The router is connected once the caller's handshake
				// completed, never before.
				UpstreamConnectMode: tcpproxy.UpstreamConnectMode_ON_DOWNSTREAM_TLS_HANDSHAKE,
				MaxEarlyDataBytes:   wrapperspb.UInt32(maxEarlyData),
				AccessLog:           accessLogs(model.Ingress, acceptedLogFields, accesslogdata.AccessLogType_TcpUpstreamConnected),
				AccessLogOptions:    &tcpproxy.TcpProxy_TcpAccessLogOptions{FlushAccessLogOnConnected: true},
			}),
		},
	}
}

const setFilterState = "envoy.filters.network.set_filter_state"

// maxEarlyData bounds what a tcp_proxy that waits for the TLS handshake
// holds of a caller's first bytes: a request's headers, not a flood.
const maxEarlyData = 64 << 10

// filterState sets key to the string format gives, shared with the
// connection to the router once.
func filterState(key, format string) *setfilterstate.FilterStateValue {
	return &setfilterstate.FilterStateValue{
		Key:                &setfilterstate.FilterStateValue_ObjectKey{ObjectKey: key},
		FactoryKey:         "envoy.string",
		Value:              &setfilterstate.FilterStateValue_FormatString{FormatString: textFormat(format)},
		SharedWithUpstream: setfilterstate.FilterStateValue_ONCE,
	}
}

func textFormat(format string) *core.SubstitutionFormatString {
	return &core.SubstitutionFormatString{Format: &core.SubstitutionFormatString_TextFormatSource{TextFormatSource: inline(format)}}
}

// exportChain is an exported port's chain on the router (terminate mode)
// or on the TLS listener (passthrough mode): it proxies to the port's
// cluster.
func exportChain(name string) *listener.FilterChain {
	return &listener.FilterChain{Name: name, Filters: []*listener.Filter{tcpProxy(name)}}
}

// routerCluster leads to the router listener, handing it the filter state
// the TLS listener shares with it. Each caller's connection gets a pool of
// its own: a pool's connections carry the filter state of the connection
// that made the pool, and the router would take the next caller to the
// first one's export.
func routerCluster() *cluster.Cluster {
	return &cluster.Cluster{
		Name:                                  IngressRouterName,
		ConnectionPoolPerDownstreamConnection: true,
		ConnectTimeout:                        durationpb.New(connectTimeout),
		ClusterDiscoveryType:                  &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
		CircuitBreakers:                       circuitBreakers(),
		LoadAssignment: &endpoint.ClusterLoadAssignment{ClusterName: IngressRouterName, Endpoints: []*endpoint.LocalityLbEndpoints{{
			LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: &core.Address{Address: &core.Address_EnvoyInternalAddress{EnvoyInternalAddress: &core.EnvoyInternalAddress{
					AddressNameSpecifier: &core.EnvoyInternalAddress_ServerListenerName{ServerListenerName: IngressRouterName},
				}}},
			}}}},
		}}},
		TransportSocket: &core.TransportSocket{
			Name: "envoy.transport_sockets.internal_upstream",
			ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(&internalupstream.InternalUpstreamTransport{
				TransportSocket: &core.TransportSocket{
					Name:       "envoy.transport_sockets.raw_buffer",
					ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbuffer.RawBuffer{})},
				},
			})},
		},
	}
}
