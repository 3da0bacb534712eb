package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Hamlet and xDS listeners' bounds take their defaults, their limits,
// and nothing beyond; the admin API beyond loopback needs a token file.
func TestListenerBoundsAndAdminAuth(t *testing.T) {
	c, err := Parse([]byte(valid), "/etc/meshfed")
	require.NoError(t, err)
	assert.Equal(t, Duration(DefaultHandshakeTimeout), c.Federation.HandshakeTimeout)
	assert.Equal(t, DefaultMaxHandshakes, c.Federation.MaxHandshakes)
	assert.Equal(t, DefaultMaxHandshakesPerSource, c.Federation.MaxHandshakesPerSource)
	assert.Equal(t, Duration(DefaultHandshakeTimeout), c.XDS.HandshakeTimeout)
	assert.Equal(t, DefaultMaxHandshakes, c.XDS.MaxHandshakes)
	assert.Equal(t, DefaultMaxHandshakesPerSource, c.XDS.MaxHandshakesPerSource)
	assert.Empty(t, c.Admin.TokenFile)

	federation := func(lines string) string {
		return strings.Replace(valid, "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n"+lines, 1)
	}
	xds := func(lines string) string {
		return strings.Replace(valid, "  listen: 127.0.0.1:18000\n", "  listen: 127.0.0.1:18000\n"+lines, 1)
	}
	admin := func(lines string) string {
		return strings.Replace(valid, "store:\n", "admin:\n"+lines+"store:\n", 1)
	}
	for _, in := range []string{
		federation("  handshakeTimeout: 100ms\n  maxHandshakes: 1\n  maxHandshakesPerSource: 1\n"),
		federation("  handshakeTimeout: 2m\n  maxHandshakes: 65536\n  maxHandshakesPerSource: 65536\n"),
	} {
		c, err := Parse([]byte(in), "/etc/meshfed")
		require.NoError(t, err)
		assert.Equal(t, c.Federation.MaxHandshakes, c.Federation.MaxHandshakesPerSource)
	}
	c, err = Parse([]byte(admin("  listen: 0.0.0.0:19100\n  allowNonLoopback: true\n  tokenFile: admin.token\n  hosts: [agent.internal]\n")), "/etc/meshfed")
	require.NoError(t, err)
	assert.Equal(t, Admin{Listen: "0.0.0.0:19100", AllowNonLoopback: true, TokenFile: "/etc/meshfed/admin.token", Hosts: []string{"agent.internal"}}, c.Admin)

	for _, tc := range []struct{ name, in, want string }{
		{"handshake timeout too short", federation("  handshakeTimeout: 10ms\n"), "line 20: federation.handshakeTimeout: 10ms is out of range 100ms-2m0s"},
		{"handshake timeout beyond gRPC's", federation("  handshakeTimeout: 5m\n"), "line 20: federation.handshakeTimeout: 5m0s is out of range 100ms-2m0s"},
		{"no handshake at all", federation("  maxHandshakes: -1\n"), "line 20: federation.maxHandshakes: -1 is out of range 1-65536"},
		{"handshakes unbounded", federation("  maxHandshakes: 100000\n"), "line 20: federation.maxHandshakes: 100000 is out of range 1-65536"},
		{"per source over all", federation("  maxHandshakes: 8\n  maxHandshakesPerSource: 9\n"), "line 21: federation.maxHandshakesPerSource: 9 is out of range 1-8 (federation.maxHandshakes)"},
		{"xDS handshake timeout too short", xds("  handshakeTimeout: 10ms\n"), "line 29: xds.handshakeTimeout: 10ms is out of range 100ms-2m0s"},
		{"xDS handshakes unbounded", xds("  maxHandshakes: 100000\n"), "line 29: xds.maxHandshakes: 100000 is out of range 1-65536"},
		{"xDS per source over all", xds("  maxHandshakes: 8\n  maxHandshakesPerSource: 9\n"), "line 30: xds.maxHandshakesPerSource: 9 is out of range 1-8 (xds.maxHandshakes)"},
		{"beyond loopback without a token", admin("  listen: 0.0.0.0:19100\n  allowNonLoopback: true\n"),
			"line 25: admin.tokenFile: required with admin.allowNonLoopback: other hosts must present a bearer token, read from this file"},
		{"an IP as a host name", admin("  hosts: [192.0.2.1]\n"), `line 26: admin.hosts[0]: "192.0.2.1" is not a host name such as agent.internal (has an all-numeric top-level label)`},
		{"a host with a port", admin("  hosts: [\"agent.internal:19100\"]\n"), `line 26: admin.hosts[0]: "agent.internal:19100" is not a host name such as agent.internal (contains a character other than a letter, digit, '-' or '.')`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NotEqual(t, valid, tc.in)
			_, err := Parse([]byte(tc.in), "/etc/meshfed")
			require.ErrorContains(t, err, tc.want)
		})
	}
}
