package untrusted

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"inventory", `"inventory"`},
		{"", `""`},
		{strings.Repeat("a", MaxQuote), `"` + strings.Repeat("a", MaxQuote) + `"`},
		{strings.Repeat("a", MaxQuote+1), `"` + strings.Repeat("a", MaxQuote) + `"... (65 bytes)`},
		// The first line only: a file's next lines are not repeated.
		{"first\nsecret second line", `"first"... (24 bytes)`},
		{"first\r\nsecret", `"first"... (13 bytes)`},
		// Escaped, so that nothing reaches a terminal raw.
		{"a\x1b[31mred\x00", `"a\x1b[31mred\x00"`},
		{"\xff\xfe", `"\xff\xfe"`},
		// Not cut inside a character: é is two bytes, the 64th and 65th.
		{strings.Repeat("a", MaxQuote-1) + "é", `"` + strings.Repeat("a", MaxQuote-1) + `"... (65 bytes)`},
		// A key read as YAML is one long scalar, its lines folded.
		{"-----BEGIN EC PRIVATE KEY----- MHcCAQEEIBY9c2VjcmV0 -----END EC PRIVATE KEY-----", "(80 bytes of PEM, not shown)"},
	} {
		require.Equal(t, tc.want, Quote(tc.in), "%q", tc.in)
	}
}

func TestMessage(t *testing.T) {
	require.Equal(t, `yaml: line 3: did not find expected key`, Message(`yaml: line 3: did not find expected key`))
	require.Equal(t, `got "x", want a number`, Message(`got "x", want a number`), "quotes stay as they are")
	require.Equal(t, `a\nb\x1b\xff`, Message("a\nb\x1b\xff"))
	long := strings.Repeat("é", MaxMessage) // twice MaxMessage bytes
	require.Equal(t, strings.Repeat("é", MaxMessage/2)+"... (480 bytes)", Message(long))
	require.Equal(t, strings.Repeat("é", MaxMessage/2-1)+"... (481 bytes)", Message("x" + long)[1:], "not cut inside a character")
}

func TestIsName(t *testing.T) {
	for _, s := range []string{"services", "protocl", "maxFileBytes", "backend_ids", "x-y2", strings.Repeat("a", 64)} {
		require.True(t, IsName(s), s)
	}
	for _, s := range []string{"", "root:$6$salt$hash:19000:0:99999:7::", "daemon:*:19000", "2fa", "a b", "a.b", "é", strings.Repeat("a", 65)} {
		require.False(t, IsName(s), s)
	}
}

func TestError(t *testing.T) {
	require.NoError(t, Error(nil))
	inner := fmt.Errorf("consul said: %s: %w", strings.Repeat("x", 1<<20), io.ErrUnexpectedEOF)
	err := Error(inner)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.Equal(t, "consul said: "+strings.Repeat("x", MaxMessage-len("consul said: "))+"... (1048605 bytes)", err.Error())
}
