package validate

import (
	"net/netip"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Policy is what one peer is allowed to publish. It is configured per peer,
// so that a tighter peer does not constrain the others.
type Policy struct {
	// TrustDomain is the peer's own trust domain: the one its sans must name.
	// The zero value admits no san at all (fail closed).
	TrustDomain spiffeid.TrustDomain
	// SANTrustDomains are further trust domains the peer may name in sans,
	// for owners whose ingress presents an identity of another domain.
	SANTrustDomains []spiffeid.TrustDomain
	// DeniedCIDRs are ranges that endpoint IP addresses must not fall in, on
	// top of the ranges that are always denied (loopback, link-local,
	// unspecified, multicast, broadcast). IPv4-mapped IPv6 addresses are
	// checked as the IPv4 address they carry.
	DeniedCIDRs []netip.Prefix
	// AllowLoopback admits loopback addresses and names, for a peer that
	// runs on the same host (development, the local demo). Never set it
	// for a peer on another host: its endpoints would point this mesh's
	// egress gateway at local services.
	AllowLoopback bool
	// Limits caps the size of what a peer may send; a zero field means its
	// default.
	Limits Limits
}

// Limits bound every repeated field and every string, so that one peer
// cannot make this agent (and the gateways it configures) hold arbitrarily
// much. Each zero (or negative) field means the default shown.
type Limits struct {
	NameLen        int // name, instance id: 253
	ResourceIDLen  int // resource_id (a name or an fqdn, or something else): 512
	DescriptionLen int // service, endpoint and instance descriptions: 1024
	ItemLen        int // each tag, endpoint label, selector entry, label or metadata key: 253
	ValueLen       int // each label or metadata value: 1024
	SANLen         int // each san: 2048 (the SPIFFE ID limit)
	Tags           int // 64
	Labels         int // service labels: 64 entries
	Endpoints      int // 256
	EndpointLabels int // labels of one endpoint: 32
	SANs           int // 32
	Instances      int // 64
	Metadata       int // metadata of one instance: 32 entries
	Selector       int // endpoint_selector of one instance: 32
}

// DefaultLimits are the limits a zero Limits stands for. It is a function so
// that no caller can change them for everyone.
func DefaultLimits() Limits { return defaultLimits }

var defaultLimits = Limits{
	NameLen:        253,
	ResourceIDLen:  512,
	DescriptionLen: 1024,
	ItemLen:        253,
	ValueLen:       1024,
	SANLen:         2048,
	Tags:           64,
	Labels:         64,
	Endpoints:      256,
	EndpointLabels: 32,
	SANs:           32,
	Instances:      64,
	Metadata:       32,
	Selector:       32,
}

// withDefaults fills every unset field, so that a policy may override one
// limit without restating the others.
func (l Limits) withDefaults() Limits {
	d := defaultLimits
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.NameLen, d.NameLen)
	set(&l.ResourceIDLen, d.ResourceIDLen)
	set(&l.DescriptionLen, d.DescriptionLen)
	set(&l.ItemLen, d.ItemLen)
	set(&l.ValueLen, d.ValueLen)
	set(&l.SANLen, d.SANLen)
	set(&l.Tags, d.Tags)
	set(&l.Labels, d.Labels)
	set(&l.Endpoints, d.Endpoints)
	set(&l.EndpointLabels, d.EndpointLabels)
	set(&l.SANs, d.SANs)
	set(&l.Instances, d.Instances)
	set(&l.Metadata, d.Metadata)
	set(&l.Selector, d.Selector)
	return l
}

// sanDomainAllowed reports whether a san of trust domain td may be taken.
func (p *Policy) sanDomainAllowed(td spiffeid.TrustDomain) bool {
	if p.TrustDomain.IsZero() && len(p.SANTrustDomains) == 0 {
		return false
	}
	if !p.TrustDomain.IsZero() && td == p.TrustDomain {
		return true
	}
	for _, d := range p.SANTrustDomains {
		if !d.IsZero() && td == d {
			return true
		}
	}
	return false
}
