package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const valid = `trustDomain: mesh-a.example
identity:
  agent:
    cert: certs/agent.pem
    key: certs/agent-key.pem
trustBundles:
  mesh-a.example:
    file: certs/bundle.pem
  mesh-b.example:
    endpoint:
      url: https://127.0.0.1:8443
      profile: https_spiffe
      spiffeId: spiffe://mesh-b.example/meshfed/agent
federation:
  listen: 127.0.0.1:15443
  deniedCIDRs: [10.0.0.0/8]
peers:
  - name: mesh-b
    trustDomain: mesh-b.example
    dial: 127.0.0.1:16443
store:
  path: data/meshfed.db
`

func TestParseValidAppliesDefaultsAndRelativePaths(t *testing.T) {
	c, err := Parse([]byte(valid), "/etc/meshfed")
	require.NoError(t, err)
	assert.Equal(t, "/etc/meshfed/certs/agent.pem", c.Identity.Agent.Cert)
	assert.Equal(t, "/etc/meshfed/certs/bundle.pem", c.TrustBundles["mesh-a.example"].File)
	assert.Equal(t, "/etc/meshfed/data/meshfed.db", c.Store.Path)
	assert.Equal(t, 1, c.Federation.Window)
	assert.Equal(t, Duration(30*time.Second), c.Federation.Grace)
	assert.Equal(t, 10000, c.Peers[0].MaxServices)
	assert.Equal(t, "10.0.0.0/8", c.DeniedPrefixes()[0].String())
}

func TestParseErrorsNameFieldValueAndLine(t *testing.T) {
	cases := []struct {
		name     string
		old, new string
		want     string
	}{
		{"unknown field", "  listen: 127.0.0.1:15443", "  listn: 127.0.0.1:15443", "line 15: field listn not found"},
		{"mistyped field", "    dial: 127.0.0.1:16443", "    dial: [a, b]", "line 20: cannot unmarshal !!seq into string"},
		{"bad trust domain", "trustDomain: mesh-a.example", "trustDomain: Mesh A", `line 1: trustDomain: "Mesh A"`},
		{"bad dial address", "    dial: 127.0.0.1:16443", "    dial: 127.0.0.1", `line 20: peers[0].dial: "127.0.0.1"`},
		{"bad CIDR", "[10.0.0.0/8]", "[10.0.0.0/8, 10.0.0.0/33]", `line 16: federation.deniedCIDRs[1]: "10.0.0.0/33" is not a CIDR`},
		{"bad profile", "profile: https_spiffe", "profile: https", `line 12: trustBundles.mesh-b.example.endpoint.profile: "https" is not https_web or https_spiffe`},
		{"peer without bundle", "trustDomain: mesh-b.example\n", "trustDomain: mesh-c.example\n", `line 19: peers[0].trustDomain: no trustBundles entry for "mesh-c.example"`},
		{"bad duration", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  grace: soon", `line 17: "soon" is not a duration`},
		{"window out of range", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  window: 5000", "line 17: federation.window: 5000 is out of range 1-4096"},
		{"key without cert", "    cert: certs/agent.pem\n", "", "line 3: identity.agent: both cert and key are needed"},
		{"context required but empty", "    dial: 127.0.0.1:16443", "    requireContext: true", "line 20: peers[0].requireContext: set, but context is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(valid, tc.old, tc.new, 1)
			require.NotEqual(t, valid, in, "the case must change the input")
			_, err := Parse([]byte(in), "/etc/meshfed")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml: no such file or directory")
}
