package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Hamlet listener's bounds take their defaults, their limits, and
// nothing beyond.
func TestListenerBounds(t *testing.T) {
	c, err := Parse([]byte(valid), "/etc/meshfed")
	require.NoError(t, err)
	assert.Equal(t, Duration(DefaultHandshakeTimeout), c.Federation.HandshakeTimeout)
	assert.Equal(t, DefaultMaxHandshakes, c.Federation.MaxHandshakes)
	assert.Equal(t, DefaultMaxHandshakesPerSource, c.Federation.MaxHandshakesPerSource)

	federation := func(lines string) string {
		return strings.Replace(valid, "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n"+lines, 1)
	}
	for _, in := range []string{
		federation("  handshakeTimeout: 100ms\n  maxHandshakes: 1\n  maxHandshakesPerSource: 1\n"),
		federation("  handshakeTimeout: 2m\n  maxHandshakes: 65536\n  maxHandshakesPerSource: 65536\n"),
	} {
		c, err := Parse([]byte(in), "/etc/meshfed")
		require.NoError(t, err)
		assert.Equal(t, c.Federation.MaxHandshakes, c.Federation.MaxHandshakesPerSource)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"handshake timeout too short", federation("  handshakeTimeout: 10ms\n"), "line 20: federation.handshakeTimeout: 10ms is out of range 100ms-2m0s"},
		{"handshake timeout beyond gRPC's", federation("  handshakeTimeout: 5m\n"), "line 20: federation.handshakeTimeout: 5m0s is out of range 100ms-2m0s"},
		{"no handshake at all", federation("  maxHandshakes: -1\n"), "line 20: federation.maxHandshakes: -1 is out of range 1-65536"},
		{"handshakes unbounded", federation("  maxHandshakes: 100000\n"), "line 20: federation.maxHandshakes: 100000 is out of range 1-65536"},
		{"per source over all", federation("  maxHandshakes: 8\n  maxHandshakesPerSource: 9\n"), "line 21: federation.maxHandshakesPerSource: 9 is out of range 1-8 (federation.maxHandshakes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NotEqual(t, valid, tc.in)
			_, err := Parse([]byte(tc.in), "/etc/meshfed")
			require.ErrorContains(t, err, tc.want)
		})
	}
}
