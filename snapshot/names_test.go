package snapshot

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
)

// unescape inverts escape; ok is false for a string escape cannot produce.
func unescape(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case plain(c):
			b.WriteByte(c)
		case c == '_' && i+2 < len(s):
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil || strings.ToLower(s[i+1:i+3]) != s[i+1:i+3] || plain(byte(v)) {
				return "", false
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), true
}

// decodeName splits a name into its unescaped fields.
func decodeName(t testing.TB, name string) []string {
	t.Helper()
	var out []string
	for _, f := range strings.Split(name, sep) {
		u, ok := unescape(f)
		require.True(t, ok, "field %q of %q", f, name)
		out = append(out, u)
	}
	return out
}

func checkNames(t testing.TB, a, b [3]string) {
	t.Helper()
	for _, s := range append(a[:], b[:]...) {
		e := escape(s)
		for i := 0; i < len(e); i++ {
			require.True(t, plain(e[i]) || e[i] == '_', "escape(%q) = %q", s, e)
		}
		require.NotContains(t, e, sep)
		u, ok := unescape(e)
		require.True(t, ok)
		require.Equal(t, s, u)
	}
	na, nb := EgressName(a[0], a[1], a[2]), EgressName(b[0], b[1], b[2])
	require.Equal(t, []string{"egress", a[0], a[1], a[2]}, decodeName(t, na))
	if a != b {
		require.NotEqual(t, na, nb, "%q and %q", a, b)
		require.NotEqual(t, EgressKey(a[0], a[1], a[2]), EgressKey(b[0], b[1], b[2]))
	}
	if a[0] != b[0] || a[1] != b[1] {
		require.NotEqual(t, IngressName(a[0], a[1]), IngressName(b[0], b[1]))
	}
	// Names of different kinds never meet: their first fields differ, or
	// their number of fields.
	require.NotEqual(t, na, IngressName(b[0], b[1]))
	require.NotEqual(t, na, EgressHTTPName(uint32(len(b[0]))))
	peers := func(names ...string) []model.Peer {
		var ps []model.Peer
		for _, n := range names {
			ps = append(ps, model.Peer{Name: n})
		}
		return ps
	}
	ca, cb := ConsumersChainName(peers(a[0], a[1])), ConsumersChainName(peers(b[0], b[1]))
	require.Equal(t, []string{"consumers", a[0], a[1]}, decodeName(t, ca))
	if a[0] != b[0] || a[1] != b[1] {
		require.NotEqual(t, ca, cb)
	}
	for _, other := range []string{IngressName(b[0], b[1]), IngressTLSName, IngressRouterName, na} {
		require.NotEqual(t, ca, other)
		require.NotEqual(t, ConsumersChainName(peers(a[0])), other)
	}
	require.NotEqual(t, IngressRouterName, IngressName(b[0], b[1]))
}

func TestEscape(t *testing.T) {
	require.Equal(t, "payments-1", escape("payments-1"))
	require.Equal(t, "payments_2emesh-b_2eexample", escape("payments.mesh-b.example"))
	require.Equal(t, "_4desh_2e_43_2f_5f_25_ff", escape("Mesh.C/_%\xff"))
	require.Equal(t, "", escape(""))
}

// The property behind every name: different tuples, different names.
func TestNamesInjective(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab-._/%A_2f"
	word := func() string {
		b := make([]byte, r.IntN(5))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	seen := map[string][3]string{}
	for range 20000 {
		tu := [3]string{word(), word(), word()}
		n := EgressName(tu[0], tu[1], tu[2])
		if prev, ok := seen[n]; ok {
			require.Equal(t, prev, tu, "name %q", n)
		}
		seen[n] = tu
	}
	checkNames(t, [3]string{"a/b", "c", ""}, [3]string{"a", "b/c", ""})
	checkNames(t, [3]string{"a_2f", "", ""}, [3]string{"a/", "", ""})

	// Validator names: lists of trust domains.
	require.NotEqual(t, ValidatorSecretName([]string{"a/b"}), ValidatorSecretName([]string{"a", "b"}))
	require.NotEqual(t, ValidatorSecretName(nil), ValidatorSecretName([]string{""}))
}

func FuzzNames(f *testing.F) {
	f.Add("mesh-b", "payments", "http", "mesh-b", "payments", "grpc")
	f.Add("a/b", "c", "", "a", "b/c", "")
	f.Add("a_2f", "x", "y", "a/", "x", "y")
	f.Add("Mesh.C", "\xff", "", "mesh_2ec", "_ff", "")
	f.Fuzz(func(t *testing.T, a0, a1, a2, b0, b1, b2 string) {
		checkNames(t, [3]string{a0, a1, a2}, [3]string{b0, b1, b2})
	})
}
