package validate

import "strings"

// nameRule says which host names a field takes. The rules differ on
// purpose: an fqdn becomes a local DNS name and so is strict, while an SNI
// is whatever the owner's gateway routes on, and Istio's routes on
// outbound_.<port>_._.<fqdn>, which has underscores.
type nameRule struct {
	upper      bool // upper-case letters allowed (names are case-insensitive)
	underscore bool // '_' allowed in labels
	minLabels  int
}

var (
	fqdnRule     = nameRule{minLabels: 2}
	addressRule  = nameRule{upper: true, minLabels: 2}
	hostnameRule = nameRule{upper: true, minLabels: 1}
	// An SNI is checked once lower-cased.
	sniRule = nameRule{underscore: true, minLabels: 1}
)

const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// checkName returns why s is not a host name under r, or "" when it is. The
// reason is a constant so that the success path does not allocate.
func checkName(s string, r nameRule) string {
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
				if !r.upper {
					return "contains an upper-case letter"
				}
				numeric = false
			case c == '_' && r.underscore:
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
	if labels < r.minLabels {
		return "has fewer than two labels"
	}
	return ""
}

// DNSName checks that value is a lowercase DNS name of at least two RFC 1123
// labels, without wildcard: the form every service fqdn takes in this agent,
// and any local name derived from one. field names the value in the error.
func DNSName(field, value string) error {
	if why := checkName(value, fqdnRule); why != "" {
		return invalid("%s: %s is not a lowercase DNS name (%s)", field, quote(value), why)
	}
	return nil
}

// NameProblem returns why s is not a host name, or "" when it is: the check
// every name from a peer gets, exported so that the registries of local
// services hold what they export to the same rules. upper and underscore
// admit those characters; minLabels is the least number of labels.
func NameProblem(s string, upper, underscore bool, minLabels int) string {
	return checkName(s, nameRule{upper: upper, underscore: underscore, minLabels: minLabels})
}

// lowerASCII lower-cases the ASCII letters of s only: strings.ToLower would
// also fold some non-ASCII runes into ASCII (U+212A KELVIN SIGN becomes
// 'k'), turning a name that must be refused into a valid one. s is returned
// as is, without allocating, when it has no upper-case letter.
func lowerASCII(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r >= 'A' && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if c := b[j]; c >= 'A' && c <= 'Z' {
			b[j] = c + ('a' - 'A')
		}
	}
	return string(b)
}
