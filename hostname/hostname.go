// Package hostname holds the host-name rules of every field that takes
// one: what a peer sends is checked by them, and so is what the local
// registries export, so that a peer accepts what this agent exports.
package hostname

// Rule says which host names a field takes. The rules differ on purpose:
// an fqdn becomes a local DNS name and so is strict, while an SNI is
// whatever the owner's gateway routes on, and Istio's routes on
// outbound_.<port>_._.<fqdn>, which has underscores.
type Rule struct {
	Upper      bool // upper-case letters allowed (names are case-insensitive)
	Underscore bool // '_' allowed in labels
	MinLabels  int
}

var (
	// FQDN is a service's name: it becomes a local DNS name.
	FQDN = Rule{MinLabels: 2}
	// PeerAddress is an endpoint address a peer sends: its ingress
	// gateway, reached across meshes by a name that resolves anywhere.
	PeerAddress = Rule{Upper: true, MinLabels: 2}
	// LocalAddress is an endpoint address of a local registry, which may
	// be a short name resolved where the gateway runs ("localhost").
	LocalAddress = Rule{Upper: true, MinLabels: 1}
	// Hostname is an instance's host name.
	Hostname = Rule{Upper: true, MinLabels: 1}
	// SNI is a server name a gateway routes on.
	SNI = Rule{Upper: true, Underscore: true, MinLabels: 1}
	// Label is one DNS label.
	Label = Rule{MinLabels: 1}
)

const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// Problem returns why s is not a host name under r, or "" when it is. The
// reason is a constant so that the success path does not allocate.
func Problem(s string, r Rule) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > maxNameLen:
		return "longer than 253 bytes"
	}
	labels := 0
	start := 0
	numeric := true // of the current label
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			switch {
			case c >= 'a' && c <= 'z':
				numeric = false
			case c >= '0' && c <= '9':
			case c == '-':
				numeric = false
			case c >= 'A' && c <= 'Z':
				if !r.Upper {
					return "contains an upper-case letter"
				}
				numeric = false
			case c == '_' && r.Underscore:
				numeric = false
			case c == '*':
				return "contains a wildcard"
			default:
				return "contains a character other than a letter, digit, '-' or '.'"
			}
			continue
		}
		label := s[start:i]
		switch {
		case label == "" && i == len(s):
			return "ends with a dot"
		case label == "":
			return "has an empty label"
		case len(label) > maxLabelLen:
			return "has a label longer than 63 bytes"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "has a label that starts or ends with '-'"
		}
		labels++
		start = i + 1
		if i == len(s) && numeric {
			// An all-numeric top label is what an IP address (or a
			// mistyped one) looks like; RFC 3696 rules it out.
			return "has an all-numeric top-level label"
		}
		numeric = true
	}
	if labels < r.MinLabels {
		return "has fewer than two labels"
	}
	return ""
}
