package snapshot

import (
	"regexp"
	"slices"
	"strings"

	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// ConsulCallers are the Consul services that Consul's intentions let call
// a service: every one but Except when Allow, only Except otherwise.
// Allow is what Consul decides for a service no intention names.
type ConsulCallers struct {
	Allow  bool     `json:"allow"`
	Except []string `json:"except,omitempty"`
}

// consulCallersSecret is the validation context of the callers of the
// import whose Consul name is name: certificates of Consul's roots whose
// SPIFFE ID is of a service Consul's intentions let call it, so that a
// caller they refuse fails the handshake and nothing is opened for it;
// nil while the roots or the callers are unknown.
func consulCallersSecret(in *view, name string) *tls.Secret {
	c, ok := in.Secrets.Consul.Callers[name]
	if in.Consul == nil || !ok || in.Secrets.Consul.Roots == "" || in.Secrets.Consul.TrustDomain == "" {
		return nil
	}
	san := &tls.SubjectAltNameMatcher{SanType: tls.SubjectAltNameMatcher_URI, Matcher: &matcher.StringMatcher{
		MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: callersRegex(in.Secrets.Consul.TrustDomain, c)}},
	}}
	return &tls.Secret{Name: ConsulCallersSecretName(name), Type: &tls.Secret_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
		TrustedCa:                 inline(in.Secrets.Consul.Roots),
		MatchTypedSubjectAltNames: []*tls.SubjectAltNameMatcher{san},
	}}}
}

// callersRegex matches the SPIFFE IDs Consul gives the services c lets
// call, in any namespace and datacenter of trustDomain (RE2, as Envoy's
// safe_regex is).
func callersRegex(trustDomain string, c ConsulCallers) string {
	prefix := "^spiffe://" + regexp.QuoteMeta(trustDomain) + "/ns/[^/]+/dc/[^/]+/svc/"
	// A name a URI cannot hold can be no caller's.
	names := slices.Compact(slices.Sorted(slices.Values(slices.DeleteFunc(slices.Clone(c.Except), func(n string) bool {
		return n == "" || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r > '~' || r == '/' })
	}))))
	switch {
	case c.Allow:
		return prefix + nameNotIn(names) + "$"
	case len(names) == 0:
		// A URI SAN is never empty: nobody.
		return "^$"
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return prefix + "(?:" + strings.Join(quoted, "|") + ")$"
}

// nameNotIn is an RE2 expression (which has no negative lookahead) of the
// names, one path segment of one byte or more, that are none of words: a
// name leaves the words' trie somewhere, by a byte no word has there, by
// ending at a node where no word ends, or by going on past a word that
// nothing extends.
func nameNotIn(words []string) string {
	type node struct {
		children map[byte]*node
		end      bool
	}
	root := &node{children: map[byte]*node{}}
	for _, w := range words {
		n := root
		for i := 0; i < len(w); i++ {
			next, ok := n.children[w[i]]
			if !ok {
				next = &node{children: map[byte]*node{}}
				n.children[w[i]] = next
			}
			n = next
		}
		n.end = true
	}
	var alts []string
	var walk func(n *node, prefix string)
	walk = func(n *node, prefix string) {
		if !n.end && prefix != "" {
			alts = append(alts, prefix)
		}
		bytes := slices.Sorted(func(yield func(byte) bool) {
			for b := range n.children {
				if !yield(b) {
					return
				}
			}
		})
		class := "[^/"
		for _, b := range bytes {
			if !isAlnum(b) {
				class += `\`
			}
			class += string(b)
		}
		alts = append(alts, prefix+class+"][^/]*")
		for _, b := range bytes {
			walk(n.children[b], prefix+regexp.QuoteMeta(string(b)))
		}
	}
	walk(root, "")
	return "(?:" + strings.Join(alts, "|") + ")"
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}
