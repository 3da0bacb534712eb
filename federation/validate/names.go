package validate

import (
	"strings"

	"github.com/meshfed/meshfed/hostname"
)

// DNSName checks that value is a lowercase DNS name of at least two RFC 1123
// labels, without wildcard: the form every service fqdn takes in this agent,
// and any local name derived from one. field names the value in the error.
func DNSName(field, value string) error {
	if why := hostname.Problem(value, hostname.FQDN); why != "" {
		return invalid("%s: %s is not a lowercase DNS name (%s)", field, quote(value), why)
	}
	return nil
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
