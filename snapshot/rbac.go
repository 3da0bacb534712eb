package snapshot

import (
	"net/netip"
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbac "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacnet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshfed/meshfed/model"
)

// consumers is the configured peers among an export's consumers, sorted by
// name, without duplicates; consumers not configured as peers are ignored.
func consumers(in *view, exp model.Export) []model.Peer {
	var out []model.Peer
	for _, name := range exp.Consumers {
		if p, ok := in.peer(name); ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b model.Peer) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return slices.CompactFunc(out, func(a, b model.Peer) bool { return a.Name == b.Name })
}

// callerIDs are, per peer, the identities it may call with: its SPIFFE IDs
// when it has some configured (sorted, unique), else any ID of its trust
// domain (a prefix). Peers are in the order given.
func callerIDs(peers []model.Peer, each func(id string, prefix bool)) {
	for _, p := range peers {
		if len(p.SPIFFEIDs) == 0 {
			each(trustDomainPrefix(p.TrustDomain), true)
			continue
		}
		ids := slices.Clone(p.SPIFFEIDs)
		slices.Sort(ids)
		for _, id := range slices.Compact(ids) {
			each(id, false)
		}
	}
}

// callerSANs are the SAN matchers of callerIDs, for the handshake.
func callerSANs(peers []model.Peer) []*tls.SubjectAltNameMatcher {
	var out []*tls.SubjectAltNameMatcher
	callerIDs(peers, func(id string, prefix bool) { out = append(out, uriSAN(id, prefix)) })
	return out
}

func wrapBool(b bool) *wrapperspb.BoolValue { return wrapperspb.Bool(b) }

// sourcesPolicy names the one RBAC policy of the egress listeners.
const sourcesPolicy = "sources"

// sourcesFilter, first on every egress listener, lets through only clients
// from cidrs, when there are some: the gateway calls peers with this mesh's
// identity, so it must serve this mesh's workloads only. nil without cidrs.
func sourcesFilter(statPrefix string, cidrs []string) *listener.Filter {
	if len(cidrs) == 0 {
		return nil
	}
	var ps []*rbac.Principal
	for _, c := range cidrs {
		p := netip.MustParsePrefix(c)
		ps = append(ps, &rbac.Principal{Identifier: &rbac.Principal_DirectRemoteIp{DirectRemoteIp: &core.CidrRange{
			AddressPrefix: p.Addr().String(),
			PrefixLen:     wrapperspb.UInt32(uint32(p.Bits())),
		}}})
	}
	cfg := &rbacnet.RBAC{
		StatPrefix: statPrefix,
		Rules: &rbac.RBAC{
			Action: rbac.RBAC_ALLOW,
			Policies: map[string]*rbac.Policy{sourcesPolicy: {
				Permissions: []*rbac.Permission{{Rule: &rbac.Permission_Any{Any: true}}},
				Principals:  ps,
			}},
		},
	}
	return &listener.Filter{Name: wellknown.RoleBasedAccessControl, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

// withSources is filters behind the sources filter of cidrs, if any.
func withSources(statPrefix string, cidrs []string, filters ...*listener.Filter) []*listener.Filter {
	if f := sourcesFilter(statPrefix, cidrs); f != nil {
		return append([]*listener.Filter{f}, filters...)
	}
	return filters
}
