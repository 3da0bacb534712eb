package snapshot

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The expression of the names that are none of a set is right for every
// name, whatever the set: the property Envoy's SAN matcher relies on.
func TestNameNotIn(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const alphabet = "ab-_.0"
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 300 {
		var set []string
		for range r.IntN(5) {
			set = append(set, word(1+r.IntN(4)))
		}
		re := regexp.MustCompile("^" + nameNotIn(set) + "$")
		for range 200 {
			name := word(1 + r.IntN(6))
			require.Equal(t, !slices.Contains(set, name), re.MatchString(name), "set %q name %q: %s", set, name, re)
		}
		require.False(t, re.MatchString(""), "a name is never empty")
		require.False(t, re.MatchString("a/b"), "a name is one path segment")
	}
}

func TestCallersRegex(t *testing.T) {
	id := func(svc string) string { return "spiffe://1111.consul/ns/default/dc/dc2/svc/" + svc }
	for _, tc := range []struct {
		c         ConsulCallers
		in, notIn []string
	}{
		{ConsulCallers{Allow: true}, []string{"bar", "web"}, nil},
		{ConsulCallers{Allow: true, Except: []string{"bar", "ba"}}, []string{"b", "barn", "web"}, []string{"bar", "ba"}},
		{ConsulCallers{Except: []string{"web", "api.v1"}}, []string{"web", "api.v1"}, []string{"bar", "apixv1", "we"}},
		{ConsulCallers{}, nil, []string{"web", ""}},
	} {
		re := regexp.MustCompile(callersRegex("1111.consul", tc.c))
		for _, s := range tc.in {
			require.True(t, re.MatchString(id(s)), "%+v lets %s call: %s", tc.c, s, re)
		}
		for _, s := range tc.notIn {
			require.False(t, re.MatchString(id(s)), "%+v refuses %s: %s", tc.c, s, re)
		}
		require.False(t, re.MatchString("spiffe://2222.consul/ns/default/dc/dc2/svc/web"), "another trust domain")
		require.False(t, re.MatchString("spiffe://1111.consul/ns/default/dc/dc2/svc/web/x"))
	}
}
