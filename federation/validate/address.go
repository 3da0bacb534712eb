package validate

import (
	"net/netip"
	"strings"

	"github.com/meshfed/meshfed/hostname"
)

// Ranges an owner never legitimately advertises to another mesh, and that
// would otherwise let a peer point this mesh's egress gateway at itself or
// at its own network: "this network" 0.0.0.0/8 and the limited broadcast
// address, on top of what netip classifies.
var (
	thisNetwork     = netip.MustParsePrefix("0.0.0.0/8")
	limitedBcast    = netip.MustParseAddr("255.255.255.255")
	localhostName   = "localhost"
	localhostSuffix = ".localhost"
)

// address checks an endpoint address and returns it normalised: an IP in
// canonical form, IPv4-mapped IPv6 as the IPv4 address it carries (so that
// an IPv4-only gateway can reach it and every policy sees one form), a DNS
// name in lower case. why is "" when the address is accepted.
func address(s string, p *Policy) (norm string, why string) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", "has an IPv6 zone"
		}
		a = a.Unmap()
		if why := deniedIP(a, p.DeniedCIDRs, p.AllowLoopback); why != "" {
			return "", why
		}
		// Reuse the peer's string when it is canonical already, which it
		// nearly always is, rather than allocate an equal one.
		var buf [64]byte
		if string(a.AppendTo(buf[:0])) == s {
			return s, ""
		}
		return a.String(), ""
	}
	if why := hostname.Problem(s, hostname.PeerAddress); why != "" {
		return "", "is neither an IP address nor a DNS name (" + why + ")"
	}
	norm = strings.ToLower(s) // returns s itself when already lower case
	if !p.AllowLoopback && (norm == localhostName || strings.HasSuffix(norm, localhostSuffix)) {
		return "", "is a loopback name"
	}
	return norm, ""
}

// deniedIP returns why a is refused, or "". a is already unmapped.
func deniedIP(a netip.Addr, denied []netip.Prefix, allowLoopback bool) string {
	switch {
	case a.IsUnspecified() || thisNetwork.Contains(a):
		return "is unspecified"
	case a.IsLoopback() && !allowLoopback:
		return "is loopback"
	case a.IsLinkLocalUnicast():
		return "is link-local"
	case a.IsMulticast():
		return "is multicast"
	case a == limitedBcast:
		return "is the broadcast address"
	}
	for _, pfx := range denied {
		// A prefix written as IPv4-mapped IPv6 must still catch the
		// unmapped address, so both forms are tried.
		if pfx.Contains(a) || (a.Is4() && pfx.Contains(netip.AddrFrom16(a.As16()))) {
			return "is in denied range " + pfx.String()
		}
	}
	return ""
}
