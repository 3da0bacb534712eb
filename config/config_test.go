package config

import (
	"os"
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
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  mesh-a.example:
    file: certs/bundle.pem
  mesh-b.example:
    endpoint:
      url: https://127.0.0.1:8443
      profile: https_spiffe
      spiffeId: spiffe://mesh-b.example/meshfed/agent
      bootstrapBundle: mesh-b-bundle.pem
federation:
  listen: 127.0.0.1:15443
  deniedCIDRs: [10.0.0.0/8]
peers:
  - name: mesh-b
    trustDomain: mesh-b.example
    dial: 127.0.0.1:16443
    spiffeIds: [spiffe://mesh-b.example/meshfed/agent]
store:
  path: data/meshfed.db
xds:
  listen: 127.0.0.1:18000
gateways:
  egress:
    ports: {from: 21000, to: 21099}
exports:
  file: services.yaml
consul:
  tokenFile: consul.token
  export: {tag: meshfed-export, domainSuffix: consul.mesh-a.example, consumers: [mesh-b]}
  import: {}
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
	assert.Equal(t, []string{"spiffe://mesh-b.example/meshfed/agent"}, c.Peers[0].SPIFFEIDs)
	assert.False(t, c.Peers[0].AnyIDInTrustDomain)
	assert.Equal(t, "10.0.0.0/8", c.DeniedPrefixes()[0].String())
	assert.Equal(t, "/etc/meshfed/services.yaml", c.Exports.File)
	assert.Equal(t, "127.0.0.1:19100", c.Admin.Listen)
	assert.Equal(t, Duration(10*time.Millisecond), c.XDS.Holdoff)
	assert.Equal(t, 256, c.Federation.MaxBatch)
	assert.Equal(t, Duration(time.Millisecond), *c.Federation.BatchDelay)
	assert.Equal(t, Duration(2*time.Minute), c.Federation.MaxBackoff)
	assert.Equal(t, Duration(2*time.Second), c.Identity.SettleTime)
	assert.Equal(t, 32<<20, c.XDS.MaxRequestBytes)
	assert.Equal(t, 100, c.XDS.MaxStreamsPerConnection)
	assert.Equal(t, 10, c.XDS.MaxStreamsPerNode)
	assert.Equal(t, 640, c.XDS.MaxStreamsPerIdentity)
	assert.Equal(t, 800, c.XDS.MaxStreams)
	assert.Equal(t, Duration(10*time.Second), c.XDS.FirstRequestTimeout)
	assert.Equal(t, []string{"egress-gateway"}, c.Gateways.Egress.NodeIDs)
	assert.Equal(t, EgressListen{Address: "127.0.0.1"}, c.Gateways.Egress.Listen)
	assert.Equal(t, "127.0.0.1", c.Gateways.Egress.Advertise)
	assert.Equal(t, PortRange{From: 21000, To: 21099}, c.Gateways.Egress.Ports)
	assert.Equal(t, Endpoint{Address: "127.0.0.1", Port: 15444}, c.Gateways.Ingress.Listen)
	assert.Empty(t, c.DNS.Listen, "DNS is off unless configured")
	assert.Equal(t, "/etc/meshfed/consul.token", c.Consul.TokenFile)
	assert.Equal(t, "127.0.0.1:8500", c.Consul.Address)
	assert.Equal(t, "{name}-{peer}", c.Consul.Import.NameTemplate)
}

func TestParseErrorsNameFieldValueAndLine(t *testing.T) {
	cases := []struct {
		name     string
		old, new string
		want     string
	}{
		{"unknown field", "  listen: 127.0.0.1:15443", "  listn: 127.0.0.1:15443", "line 18: federation.listn: unknown field; did you mean listen?"},
		{"unknown field far from any", "  listen: 127.0.0.1:15443", "  colour: blue", "line 18: federation.colour: unknown field; known here: advertise, batchDelay, deniedCIDRs, grace, handshakeTimeout, ingress, join, listen, maxBackoff, maxBatch, maxHandshakes, maxHandshakesPerSource, peersDir, retention, window"},
		{"string for a number", "{from: 21000, to: 21099}", "{from: 21000, to: abc}", `line 31: gateways.egress.ports.to: "abc" is not a whole number`},
		{"list for a boolean", "    dial: 127.0.0.1:16443", "    dial: 127.0.0.1:16443\n    allowLoopback: [yes]", "line 24: peers[0].allowLoopback: a list is not true or false"},
		{"mistyped field", "    dial: 127.0.0.1:16443", "    dial: [a, b]", "line 23: peers[0].dial: a list is not a string"},
		{"bad trust domain", "trustDomain: mesh-a.example", "trustDomain: Mesh A", `line 1: trustDomain: "Mesh A"`},
		{"bad dial address", "    dial: 127.0.0.1:16443", "    dial: 127.0.0.1", `line 23: peers[0].dial: "127.0.0.1"`},
		{"bad CIDR", "[10.0.0.0/8]", "[10.0.0.0/8, 10.0.0.0/33]", `line 19: federation.deniedCIDRs[1]: "10.0.0.0/33" is not a CIDR`},
		{"bad profile", "profile: https_spiffe", "profile: https", `line 14: trustBundles.mesh-b.example.endpoint.profile: "https" is not https_web or https_spiffe`},
		{"peer without bundle", "trustDomain: mesh-b.example\n", "trustDomain: mesh-c.example\n", `line 22: peers[0].trustDomain: no trustBundles entry for "mesh-c.example"`},
		{"bad duration", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  grace: soon", `line 20: federation.grace: "soon" is not a duration such as 30s, 2m or 1h30m`},
		{"window out of range", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  window: 5000", "line 20: federation.window: 5000 is out of range 1-4096"},
		{"redial at once", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  maxBackoff: 500ms", "line 20: federation.maxBackoff: 500ms is out of range 1s-1h0m0s"},
		{"redial once a day", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  maxBackoff: 24h", "line 20: federation.maxBackoff: 24h0m0s is out of range 1s-1h0m0s"},
		{"no settle time", "  ingress: {cert: certs/ingress.pem", "  settleTime: 10ms\n  ingress: {cert: certs/ingress.pem", "line 7: identity.settleTime: 10ms is out of range 100ms-1m0s"},
		{"settle for ever", "  ingress: {cert: certs/ingress.pem", "  settleTime: 2m\n  ingress: {cert: certs/ingress.pem", "line 7: identity.settleTime: 2m0s is out of range 100ms-1m0s"},
		{"batch of none", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  maxBatch: -1", "line 20: federation.maxBatch: -1 is out of range 1-4096"},
		{"batch beyond the largest window", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  maxBatch: 4097", "line 20: federation.maxBatch: 4097 is out of range 1-4096"},
		{"negative batch delay", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  batchDelay: -1ms", "line 20: federation.batchDelay: -1ms is negative"},
		{"negative retention", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  retention: -1h", "line 20: federation.retention: -1h0m0s is negative"},
		{"negative route timeout", "    ports: {from: 21000, to: 21099}", "    ports: {from: 21000, to: 21099}\n    httpRouteTimeout: -5s", "line 32: gateways.egress.httpRouteTimeout: -5s is negative"},
		{"grace of none", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  grace: 0s", `line 20: federation.grace: "0s" is not a value here: leave the field out for its default, 30s`},
		{"holdoff of none", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  holdoff: 0ms", `line 29: xds.holdoff: "0ms" is not a value here: leave the field out for its default, 10ms`},
		{"join endpoint without address", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  join: {advertise: a.example:15445}", "line 20: federation.join.listen: required: where joining meshes connect"},
		{"join endpoint address", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  join: {listen: 15445}", `line 20: federation.join.listen: "15445": missing port in address`},
		{"advertised address", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  advertise: [a.example]", `line 20: federation.advertise[0]: "a.example": missing port in address`},
		{"batch delay over a second", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  batchDelay: 1.5s", "line 20: federation.batchDelay: 1.5s is out of range 0s-1s"},
		{"batch size not a number", "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  maxBatch: lots", `line 20: federation.maxBatch: "lots" is not a whole number`},
		{"key without cert", "    cert: certs/agent.pem\n", "", "line 3: identity.agent: both cert and key are needed"},
		{"gateway without SVID", "  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}\n", "", "line 2: identity: no egress files: the egress gateway needs an SVID"},
		{"caller of another trust domain", "    dial: 127.0.0.1:16443", "    dial: 127.0.0.1:16443\n    callers: [spiffe://mesh-c.example/egress]", `line 24: peers[0].callers[0]: "spiffe://mesh-c.example/egress" is not in trust domain "mesh-b.example"`},
		{"consul export selecting nothing", "{tag: meshfed-export, domainSuffix", "{domainSuffix", "line 36: consul.export: selects nothing: set services, tag or meta"},
		{"bad xds address", "  listen: 127.0.0.1:18000", "  listen: localhost", `line 28: xds.listen: "localhost"`},
		{"plaintext xds beyond loopback", "  listen: 127.0.0.1:18000", "  listen: 0.0.0.0:18000", `line 28: xds.listen: "0.0.0.0:18000" is not loopback, and gateways get their SVID private keys over xDS: set xds.tls (mutual TLS) or use a unix:// socket`},
		{"xds tls on a unix socket", "  listen: 127.0.0.1:18000", "  listen: unix:///run/x.sock\n  tls: {}", `line 29: xds.tls: is for a host:port xds.listen, not the Unix socket "unix:///run/x.sock"`},
		{"xds gateway of another trust domain", "  listen: 127.0.0.1:18000", "  listen: 10.0.0.1:18000\n  tls: {gateways: [{spiffeId: spiffe://mesh-b.example/gw, nodeIds: [egress-gateway]}]}", `line 29: xds.tls.gateways[0].spiffeId: "spiffe://mesh-b.example/gw" is not in this mesh's trust domain "mesh-a.example"`},
		{"xds gateway of an unknown node", "  listen: 127.0.0.1:18000", "  listen: 10.0.0.1:18000\n  tls: {gateways: [{spiffeId: spiffe://mesh-a.example/gw, nodeIds: [gw-9]}]}", `line 29: xds.tls.gateways[0].nodeIds[0]: "gw-9" is not a node id of gateways.egress or gateways.ingress`},
		{"xds request cap too small", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxRequestBytes: 65536", "line 29: xds.maxRequestBytes: 65536 is out of range 1048576-2147483647 (1 MiB to 2 GiB - 1)"},
		{"xds request cap beyond protobuf's", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxRequestBytes: 2147483648", "line 29: xds.maxRequestBytes: 2147483648 is out of range 1048576-2147483647 (1 MiB to 2 GiB - 1)"},
		{"no xds stream a connection", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxStreamsPerConnection: -5", "line 29: xds.maxStreamsPerConnection: -5 is out of range 1-10000"},
		{"xds streams a connection unbounded", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxStreamsPerConnection: 100000", "line 29: xds.maxStreamsPerConnection: 100000 is out of range 1-10000"},
		{"no xds stream a node", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxStreamsPerNode: -1", "line 29: xds.maxStreamsPerNode: -1 is out of range 1-10000"},
		{"xds streams a node unbounded", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxStreamsPerNode: 10001", "line 29: xds.maxStreamsPerNode: 10001 is out of range 1-10000"},
		{"no xds stream an identity", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxStreamsPerIdentity: -1", "line 29: xds.maxStreamsPerIdentity: -1 is out of range 1-100000"},
		{"xds streams an identity unbounded", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxStreamsPerIdentity: 100001", "line 29: xds.maxStreamsPerIdentity: 100001 is out of range 1-100000"},
		{"no xds stream at all", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxStreams: -3", "line 29: xds.maxStreams: -3 is out of range 1-100000"},
		{"xds streams unbounded", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  maxStreams: 100001", "line 29: xds.maxStreams: 100001 is out of range 1-100000"},
		{"xds first request at once", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  firstRequestTimeout: 500ms", "line 29: xds.firstRequestTimeout: 500ms is out of range 1s-10m0s"},
		{"xds first request never", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  firstRequestTimeout: 1h", "line 29: xds.firstRequestTimeout: 1h0m0s is out of range 1s-10m0s"},
		{"xds first request timeout not a duration", "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  firstRequestTimeout: 10", `line 29: xds.firstRequestTimeout: "10" is not a duration such as 30s, 2m or 1h30m`},
		{"port range reversed", "{from: 21000, to: 21099}", "{from: 21099, to: 21000}", "line 31: gateways.egress.ports: 21099-21000 is not a range of ports"},
		{"port out of range", "{from: 21000, to: 21099}", "{from: 21000, to: 70000}", "line 31: gateways.egress.ports.to: 70000 is not a port"},
		{"gateway address not an IP", "    ports: {from: 21000, to: 21099}", "    ports: {from: 21000, to: 21099}\n    listen: {address: egress.local}", `line 32: gateways.egress.listen.address: "egress.local" is not an IP address`},
		{"node id of both roles", "    ports: {from: 21000, to: 21099}", "    ports: {from: 21000, to: 21099}\n  ingress:\n    nodeIds: [egress-gateway]", `line 33: gateways.ingress.nodeIds[0]: "egress-gateway" is already a node id of the egress gateway`},
		{"egress listen port", "    ports: {from: 21000, to: 21099}", "    ports: {from: 21000, to: 21099}\n    listen: {port: 15001}", "line 32: gateways.egress.listen.port: 15001: the egress gateway has no shared port; it serves each HTTP import on the service's own port and the others on gateways.egress.ports, so set only gateways.egress.listen.address"},
		{"context required but empty", "    dial: 127.0.0.1:16443", "    requireContext: true", "line 23: peers[0].requireContext: set, but context is empty"},
		{"peer without identity", "    spiffeIds: [spiffe://mesh-b.example/meshfed/agent]\n", "",
			`line 21: peers[0].spiffeIds: required: the SPIFFE IDs peer "mesh-b"'s agent presents (meshfed certs init gives it spiffe://mesh-b.example/meshfed/agent); anyIdInTrustDomain: true accepts any ID of "mesh-b.example" instead`},
		{"peer with both identity rules", "    spiffeIds: [spiffe://mesh-b.example/meshfed/agent]", "    spiffeIds: [spiffe://mesh-b.example/meshfed/agent]\n    anyIdInTrustDomain: true",
			`line 25: peers[0].anyIdInTrustDomain: set together with spiffeIds: list the agent's SPIFFE IDs or accept any ID of "mesh-b.example", not both`},
		{"spiffe id of another trust domain", "[spiffe://mesh-b.example/meshfed/agent]", "[spiffe://mesh-b.example/meshfed/agent, spiffe://mesh-c.example/meshfed/agent]",
			`line 24: peers[0].spiffeIds[1]: "spiffe://mesh-c.example/meshfed/agent" is not in trust domain "mesh-b.example"`},
		{"self-serving endpoint without bootstrap", "      bootstrapBundle: mesh-b-bundle.pem\n", "", `line 12: trustBundles.mesh-b.example.endpoint.bootstrapBundle: not set: the endpoint's spiffeId "spiffe://mesh-b.example/meshfed/agent" is in trust domain "mesh-b.example" itself`},
		{"endpoint not https", "url: https://127.0.0.1:8443", "url: http://127.0.0.1:8443", `line 13: trustBundles.mesh-b.example.endpoint.url: "http://127.0.0.1:8443" is not an https URL with a host and without user information`},
		{"CA file with https_spiffe", "      bootstrapBundle: mesh-b-bundle.pem\n", "      bootstrapBundle: mesh-b-bundle.pem\n      caFile: web-ca.pem\n", `line 17: trustBundles.mesh-b.example.endpoint.caFile: "/etc/meshfed/web-ca.pem" is for profile https_web, not https_spiffe`},
		{"spiffeId with https_web", "profile: https_spiffe", "profile: https_web", `line 15: trustBundles.mesh-b.example.endpoint.spiffeId: "spiffe://mesh-b.example/meshfed/agent" is for profile https_spiffe, not https_web`},
		{"bootstrap for an endpoint of another trust domain", "spiffeId: spiffe://mesh-b.example/meshfed/agent", "spiffeId: spiffe://mesh-a.example/bundle-server",
			`line 16: trustBundles.mesh-b.example.endpoint.bootstrapBundle: "/etc/meshfed/mesh-b-bundle.pem" is only for an endpoint whose spiffeId is in "mesh-b.example"; "spiffe://mesh-a.example/bundle-server" is authenticated with trustBundles.mesh-a.example`},
		{"endpoint of an unknown trust domain", "spiffeId: spiffe://mesh-b.example/meshfed/agent\n      bootstrapBundle: mesh-b-bundle.pem", "spiffeId: spiffe://mesh-c.example/x",
			`line 15: trustBundles.mesh-b.example.endpoint.spiffeId: "spiffe://mesh-c.example/x" is in trust domain "mesh-c.example", which has no trustBundles entry to authenticate the endpoint`},
		{"web bundle endpoint without certificate", "consul:\n", "bundleEndpoint: {profile: https_web}\nconsul:\n", "line 34: bundleEndpoint.webCertificate: profile https_web needs a cert and key for the endpoint's host name"},
		{"web certificate with https_spiffe", "consul:\n", "bundleEndpoint:\n  webCertificate: {cert: w.pem, key: w-key.pem}\nconsul:\n", "line 35: bundleEndpoint.webCertificate: is for profile https_web; https_spiffe presents the agent's SVID"},
		{"refresh hint in milliseconds", "consul:\n", "bundleEndpoint: {refreshHint: 1500ms}\nconsul:\n", "line 34: bundleEndpoint.refreshHint: 1.5s is not a whole number of seconds (spiffe_refresh_hint is in seconds)"},
		{"bundle endpoint address", "consul:\n", "bundleEndpoint: {listen: 8443}\nconsul:\n", `line 34: bundleEndpoint.listen: "8443": missing port in address`},
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

// Every problem of the shape is reported at once, each with its line and
// without Go type names.
func TestParseReportsEveryShapeProblem(t *testing.T) {
	in := strings.Replace(valid, "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  holdof: 5ms\n  maxDelay: 2", 1)
	in = strings.Replace(in, "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: 10.0.0.0/8", 1)
	_, err := Parse([]byte(in), "/etc/meshfed")
	var ce *Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, []Problem{
		{Line: 19, Field: "federation.deniedCIDRs", Msg: `"10.0.0.0/8" is not a list ([...], or lines starting with -)`},
		{Line: 29, Field: "xds.holdof", Msg: "unknown field; did you mean holdoff?"},
		{Line: 30, Field: "xds.maxDelay", Msg: `"2" is not a duration such as 30s, 2m or 1h30m`},
	}, ce.Problems)
	require.NotContains(t, err.Error(), "config.")
}

func TestEmptyFileSaysSo(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n"} {
		_, err := Parse([]byte(in), "/etc/meshfed")
		require.EqualError(t, err, "the file is empty; a configuration needs at least trustDomain, identity and trustBundles (examples/meshfed.yaml has every field)")
	}
	path := filepath.Join(t.TempDir(), "meshfed.yaml")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	_, err := Load(path)
	require.EqualError(t, err, path+": the file is empty; a configuration needs at least trustDomain, identity and trustBundles (examples/meshfed.yaml has every field)")
}

func TestLoadErrorsGiveFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshfed.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(valid, "  listen: 127.0.0.1:15443", "  listn: 127.0.0.1:15443", 1)), 0o600))
	_, err := Load(path)
	require.EqualError(t, err, path+":18: federation.listn: unknown field; did you mean listen?")
}

func TestBundleSettingsDefaultsAndPaths(t *testing.T) {
	in := strings.Replace(valid, "consul:\n", "bundleEndpoint: {}\nconsul:\n", 1)
	c, err := Parse([]byte(in), "/etc/meshfed")
	require.NoError(t, err)
	assert.Equal(t, &BundleEndpoint{Listen: "127.0.0.1:8443", Profile: "https_spiffe"}, c.BundleEndpoint)
	assert.Equal(t, "/etc/meshfed/mesh-b-bundle.pem", c.TrustBundles["mesh-b.example"].Endpoint.BootstrapBundle)
	assert.Equal(t, "/etc/meshfed/data/trust-bundles/mesh-b.example.json", c.SavedBundlePath("mesh-b.example"))

	in = strings.Replace(valid, "consul:\n", "bundleEndpoint: {profile: https_web, webCertificate: {cert: w.pem, key: w-key.pem}, refreshHint: 90s}\nconsul:\n", 1)
	in = strings.Replace(in, "      spiffeId: spiffe://mesh-b.example/meshfed/agent\n      bootstrapBundle: mesh-b-bundle.pem\n", "      caFile: web-ca.pem\n", 1)
	in = strings.Replace(in, "profile: https_spiffe", "profile: https_web", 1)
	c, err = Parse([]byte(in), "/etc/meshfed")
	require.NoError(t, err)
	assert.Equal(t, &BundleEndpoint{Listen: "127.0.0.1:8443", Profile: "https_web", RefreshHint: Duration(90 * time.Second),
		WebCertificate: &Files{Cert: "/etc/meshfed/w.pem", Key: "/etc/meshfed/w-key.pem"}}, c.BundleEndpoint)
	assert.Equal(t, "/etc/meshfed/web-ca.pem", c.TrustBundles["mesh-b.example"].Endpoint.CAFile)
}

// The old behaviour stays available, but only when asked for by name.
func TestAnyIDInTrustDomainIsExplicit(t *testing.T) {
	in := strings.Replace(valid, "    spiffeIds: [spiffe://mesh-b.example/meshfed/agent]", "    anyIdInTrustDomain: true", 1)
	c, err := Parse([]byte(in), "/etc/meshfed")
	require.NoError(t, err)
	assert.True(t, c.Peers[0].AnyIDInTrustDomain)
	assert.Empty(t, c.Peers[0].SPIFFEIDs)
}

func TestLoadNamesTheFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml: no such file or directory")
}

const minimal = `trustDomain: mesh-a.example
identity:
  agent: {cert: a, key: b}
  egress: {cert: a, key: b}
  ingress: {cert: a, key: b}
trustBundles:
  mesh-a.example: {file: x}
`

// The documented example must stay valid and say what the defaults are.
func TestExampleFileIsValidAndStatesTheDefaults(t *testing.T) {
	c, err := Load("../examples/meshfed.yaml")
	require.NoError(t, err)
	d, err := Parse([]byte(minimal), "/")
	require.NoError(t, err)
	assert.Equal(t, d.Federation.Listen, c.Federation.Listen)
	assert.Equal(t, d.Federation.Window, c.Federation.Window)
	assert.Equal(t, d.Federation.Grace, c.Federation.Grace)
	assert.Equal(t, d.Federation.MaxBatch, c.Federation.MaxBatch)
	assert.Equal(t, d.Federation.BatchDelay, c.Federation.BatchDelay)
	assert.Equal(t, d.Exports.MaxFileBytes, c.Exports.MaxFileBytes)
	assert.Equal(t, d.Federation.HandshakeTimeout, c.Federation.HandshakeTimeout)
	assert.Equal(t, d.Federation.MaxHandshakes, c.Federation.MaxHandshakes)
	assert.Equal(t, d.Federation.MaxHandshakesPerSource, c.Federation.MaxHandshakesPerSource)
	assert.Equal(t, d.Federation.MaxBackoff, c.Federation.MaxBackoff)
	assert.Equal(t, d.Identity.SettleTime, c.Identity.SettleTime)
	assert.Equal(t, d.Identity.ExpiryWarning, c.Identity.ExpiryWarning)
	assert.Equal(t, "unix:///xds.sock", d.XDS.Listen, "the default socket is beside the configuration")
	assert.Equal(t, "unix://"+filepath.Join("../examples", "xds.sock"), c.XDS.Listen)
	d.XDS.Listen, c.XDS.Listen = "", ""
	assert.Equal(t, d.XDS, c.XDS)
	assert.Equal(t, d.Admin, c.Admin)
	assert.Equal(t, d.DNS.Listen, c.DNS.Listen)
	assert.Equal(t, d.Gateways, c.Gateways)
	assert.Equal(t, 10000, c.Peers[0].MaxServices)
	withEndpoint, err := Parse([]byte(strings.Replace(minimal, "\n", "\nbundleEndpoint: {}\n", 1)), "/")
	require.NoError(t, err)
	assert.Equal(t, withEndpoint.BundleEndpoint, c.BundleEndpoint)
}

// The bounds themselves are taken, and a batch delay of 0s stays 0s: a
// batch then holds only what has arrived.
func TestBoundsTakeTheirLimits(t *testing.T) {
	for _, tc := range []struct {
		federation, xds string
		check           func(*Config)
	}{
		{"maxBatch: 1\n  batchDelay: 0s", "maxRequestBytes: 1048576\n  maxStreamsPerConnection: 1\n  maxStreamsPerNode: 1\n  maxStreamsPerIdentity: 1\n  maxStreams: 1\n  firstRequestTimeout: 1s\n  handshakeTimeout: 100ms\n  maxHandshakes: 1\n  maxHandshakesPerSource: 1", func(c *Config) {
			assert.Equal(t, 1, c.Federation.MaxBatch)
			assert.Equal(t, Duration(0), *c.Federation.BatchDelay)
			assert.Equal(t, XDS{Listen: "127.0.0.1:18000", Holdoff: Duration(DefaultHoldoff), MaxDelay: Duration(DefaultMaxDelay),
				MaxRequestBytes: 1 << 20, MaxStreamsPerConnection: 1, MaxStreamsPerNode: 1,
				MaxStreamsPerIdentity: 1, MaxStreams: 1, FirstRequestTimeout: Duration(time.Second),
				HandshakeTimeout: Duration(100 * time.Millisecond), MaxHandshakes: 1, MaxHandshakesPerSource: 1}, c.XDS)
		}},
		{"maxBatch: 4096\n  batchDelay: 1s", "maxRequestBytes: 2147483647\n  maxStreamsPerConnection: 10000\n  maxStreamsPerNode: 10000\n  maxStreamsPerIdentity: 100000\n  maxStreams: 100000\n  firstRequestTimeout: 10m\n  handshakeTimeout: 2m\n  maxHandshakes: 65536\n  maxHandshakesPerSource: 65536", func(c *Config) {
			assert.Equal(t, 4096, c.Federation.MaxBatch)
			assert.Equal(t, Duration(time.Second), *c.Federation.BatchDelay)
			assert.Equal(t, XDS{Listen: "127.0.0.1:18000", Holdoff: Duration(DefaultHoldoff), MaxDelay: Duration(DefaultMaxDelay),
				MaxRequestBytes: 1<<31 - 1, MaxStreamsPerConnection: 10000, MaxStreamsPerNode: 10000,
				MaxStreamsPerIdentity: 100000, MaxStreams: 100000, FirstRequestTimeout: Duration(10 * time.Minute),
				HandshakeTimeout: Duration(2 * time.Minute), MaxHandshakes: 65536, MaxHandshakesPerSource: 65536}, c.XDS)
		}},
	} {
		in := strings.Replace(valid, "  deniedCIDRs: [10.0.0.0/8]", "  deniedCIDRs: [10.0.0.0/8]\n  "+tc.federation, 1)
		in = strings.Replace(in, "  listen: 127.0.0.1:18000", "  listen: 127.0.0.1:18000\n  "+tc.xds, 1)
		c, err := Parse([]byte(in), "/etc/meshfed")
		require.NoError(t, err)
		tc.check(c)
	}
}
