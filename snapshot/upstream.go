package snapshot

import (
	"encoding/binary"
	"slices"
	"strings"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	setfilterstate "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/set_filter_state/v3"
	setfilterstatehttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_filter_state/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	setfilterstatenet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/set_filter_state/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// An import's cluster is its upstream's (UpstreamName), shared by every
// imported instance with the same endpoints, SANs and upstream protocol,
// and the server name that selects the instance at the owner's ingress is
// not in the cluster: the listener or route that leads to the instance
// sets it per connection or request, in the filter state Envoy takes an
// upstream connection's SNI from. Envoy keys its connection pools on that
// SNI too, so two instances never share an upstream connection.
//
// Measured with Envoy 1.40 (make bench-envoy, 10,000 imports on their
// owner's ingress): a cluster per import took 66 KB of the egress's heap
// per import (its TLS context alone about 18 KB, its stats 16 KB); with
// the upstream's shared, an import takes 19 KB: its listener or routing
// scope, and its routes' statistics.

// upstreamServerNameKey is the filter state object Envoy's tcp_proxy and
// router read the SNI of an upstream connection from.
const upstreamServerNameKey = "envoy.network.upstream_server_name"

// setFilterStateHTTP is the HTTP filter that sets a request's filter
// state; its configuration is per route (sniRouteConfig).
const setFilterStateHTTP = "envoy.filters.http.set_filter_state"

// upstream encodes what an instance's cluster depends on besides its
// peer, for UpstreamName: its endpoints (sorted, as selectEndpoints gives
// them), the SANs, and whether it speaks HTTP/2 upstream. Every field is
// length-prefixed, so no two upstreams encode alike.
func upstream(hps []hostPort, sans []string, http2 bool) []byte {
	var b []byte
	field := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(hps)))
	for _, hp := range hps {
		field(hp.Host)
		b = binary.AppendUvarint(b, uint64(hp.Port))
	}
	b = binary.AppendUvarint(b, uint64(len(sans)))
	for _, s := range sans {
		field(s)
	}
	if http2 {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return b
}

// sortedSANs are sans sorted and without duplicates: the same SANs in
// another order are the same upstream.
func sortedSANs(sans []string) []string {
	s := slices.Clone(sans)
	slices.Sort(s)
	return slices.Compact(s)
}

// sniValue sets the upstream SNI to sni. A format string interprets '%':
// sni is a validated host name (federation/validate), which has none, and
// one that had would be cut there rather than read as a command.
func sniValue(sni string) []*setfilterstate.FilterStateValue {
	if i := strings.IndexByte(sni, '%'); i >= 0 {
		sni = sni[:i]
	}
	return []*setfilterstate.FilterStateValue{{
		Key:   &setfilterstate.FilterStateValue_ObjectKey{ObjectKey: upstreamServerNameKey},
		Value: &setfilterstate.FilterStateValue_FormatString{FormatString: textFormat(sni)},
	}}
}

// sniFilter is the network filter that makes a connection's upstream
// SNI sni; it goes before the tcp_proxy.
func sniFilter(sni string) *listener.Filter {
	cfg := &setfilterstatenet.Config{OnNewConnection: sniValue(sni)}
	return &listener.Filter{Name: setFilterState, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

// sniHTTPFilter is the HTTP filter that applies each route's SNI
// (sniRouteConfig); it sets nothing where a route has none.
func sniHTTPFilter() *hcm.HttpFilter {
	return &hcm.HttpFilter{Name: setFilterStateHTTP, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&setfilterstatehttp.Config{})}}
}

// sniRouteConfig makes the upstream SNI of a route's requests sni.
func sniRouteConfig(sni string) map[string]*anypb.Any {
	return map[string]*anypb.Any{setFilterStateHTTP: mustAny(&setfilterstatehttp.Config{OnRequestHeaders: sniValue(sni)})}
}
