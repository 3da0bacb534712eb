package preflight

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/meshfed/meshfed/certs"
)

const configFile = `trustDomain: mesh-a.example
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  mesh-a.example: {file: certs/bundle.pem}
  mesh-b.example: {file: b/bundle.pem}
federation:
  listen: 127.0.0.1:15443
  ingress: [{address: 192.0.2.10, port: 15444}]
peers:
  - {name: mesh-b, trustDomain: mesh-b.example, spiffeIds: [spiffe://mesh-b.example/meshfed/agent]}
xds: {listen: 127.0.0.1:18000}
admin: {listen: 127.0.0.1:19100}
exports: {file: services.yaml}
`

const services = `services:
  - name: inventory
    fqdn: inventory.mesh-a.example
    consumers: [mesh-b]
    ports: [{name: http, port: 8080, protocol: HTTP, endpoints: [{address: 10.0.0.1, port: 9080}]}]
`

// meshDir writes a dev CA for mesh-a and mesh-b, a registry file and the
// configuration with each replacement (old, new, old, new...) made.
func meshDir(t *testing.T, replace ...string) string {
	t.Helper()
	dir := t.TempDir()
	for td, sub := range map[string]string{"mesh-a.example": "certs", "mesh-b.example": "b"} {
		require.NoError(t, certs.InitDevCA(certs.DevCAOptions{Dir: filepath.Join(dir, sub), TrustDomain: spiffeid.RequireTrustDomainFromString(td)}))
	}
	cfg := configFile
	for i := 0; i+1 < len(replace); i += 2 {
		next := strings.Replace(cfg, replace[i], replace[i+1], 1)
		require.NotEqual(t, cfg, next, "%q is not in the configuration", replace[i])
		cfg = next
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meshfed.yaml"), []byte(cfg), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(services), 0o600))
	return dir
}

// findings runs the check and writes each finding with {dir} for the
// folder, so that cases can be written out in full.
func findings(t *testing.T, dir string, opts Options) []string {
	t.Helper()
	r := Check(filepath.Join(dir, "meshfed.yaml"), opts)
	out := []string{}
	for _, f := range r.Findings {
		out = append(out, strings.ReplaceAll(f.String(), dir, "{dir}"))
	}
	return out
}

func TestAGoodConfigurationHasNoFindings(t *testing.T) {
	dir := meshDir(t)
	r := Check(filepath.Join(dir, "meshfed.yaml"), Options{})
	require.Empty(t, r.Findings)
	require.NoError(t, r.Err())
	require.Equal(t, "mesh-a.example", r.Config.TrustDomain)
}

func TestCheckFindings(t *testing.T) {
	cases := []struct {
		name    string
		replace []string
		prepare func(t *testing.T, dir string)
		now     time.Duration // after the certificates were issued
		want    []string
	}{
		{name: "SVID of another trust domain", replace: []string{"egress: {cert: certs/egress.pem, key: certs/egress-key.pem}", "egress: {cert: b/egress.pem, key: b/egress-key.pem}"},
			want: []string{"{dir}/meshfed.yaml:4: error: identity.egress.cert: {dir}/b/egress.pem holds spiffe://mesh-b.example/meshfed/gateway/egress, which is not in this mesh's trust domain mesh-a.example"}},
		{name: "swapped roles", replace: []string{"egress: {cert: certs/egress.pem, key: certs/egress-key.pem}", "egress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}"},
			want: []string{"{dir}/meshfed.yaml:4: error: identity.egress.cert: {dir}/certs/ingress.pem holds spiffe://mesh-a.example/meshfed/gateway/ingress, the ingress gateway's ID; identity.egress needs spiffe://mesh-a.example/meshfed/gateway/egress (are two roles' files swapped?)"}},
		{name: "ingress with an ID peers are not told", replace: []string{"ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}", "ingress: {cert: certs/custom.pem, key: certs/custom-key.pem}"},
			prepare: issue("spiffe://mesh-a.example/ns/edge/sa/ingress", "custom"),
			want:    []string{"{dir}/meshfed.yaml:5: error: identity.ingress.cert: {dir}/certs/custom.pem holds spiffe://mesh-a.example/ns/edge/sa/ingress, but peers are told that this mesh's ingress gateway presents spiffe://mesh-a.example/meshfed/gateway/ingress and accept no other"}},
		{name: "agent with its own ID", replace: []string{"agent: {cert: certs/agent.pem, key: certs/agent-key.pem}", "agent: {cert: certs/custom.pem, key: certs/custom-key.pem}"},
			prepare: issue("spiffe://mesh-a.example/hamlet", "custom"),
			want:    []string{"{dir}/meshfed.yaml:3: warning: identity.agent.cert: {dir}/certs/custom.pem holds spiffe://mesh-a.example/hamlet, not spiffe://mesh-a.example/meshfed/agent: peers that list this mesh's SPIFFE IDs (spiffeIds, callers) must name it"}},
		{name: "SVIDs about to expire", now: 25 * 24 * time.Hour, want: []string{
			"{dir}/meshfed.yaml:3: warning: identity.agent.cert: the certificate in {dir}/certs/agent.pem expires at {t}, in 120h0m0s (identity.expiryWarning is 168h0m0s)",
			"{dir}/meshfed.yaml:4: warning: identity.egress.cert: the certificate in {dir}/certs/egress.pem expires at {t}, in 120h0m0s (identity.expiryWarning is 168h0m0s)",
			"{dir}/meshfed.yaml:5: warning: identity.ingress.cert: the certificate in {dir}/certs/ingress.pem expires at {t}, in 120h0m0s (identity.expiryWarning is 168h0m0s)",
		}},
		{name: "expired SVIDs and CAs about to expire", now: 360 * 24 * time.Hour, replace: []string{"  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}\n", "  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}\n  expiryWarning: 240h\n"}, want: []string{
			"{dir}/meshfed.yaml:3: error: identity.agent.cert: the certificate in {dir}/certs/agent.pem expired at {t}, 7920h0m0s ago",
			"{dir}/meshfed.yaml:4: error: identity.egress.cert: the certificate in {dir}/certs/egress.pem expired at {t}, 7920h0m0s ago",
			"{dir}/meshfed.yaml:5: error: identity.ingress.cert: the certificate in {dir}/certs/ingress.pem expired at {t}, 7920h0m0s ago",
			"{dir}/meshfed.yaml:8: warning: trustBundles.mesh-a.example.file: the CA in {dir}/certs/bundle.pem expires at {t}, in 120h0m0s (identity.expiryWarning is 240h0m0s)",
			"{dir}/meshfed.yaml:9: warning: trustBundles.mesh-b.example.file: the CA in {dir}/b/bundle.pem expires at {t}, in 120h0m0s (identity.expiryWarning is 240h0m0s)",
		}},
		{name: "plaintext xDS beyond loopback", replace: []string{"xds: {listen: 127.0.0.1:18000}", "xds: {listen: 10.0.0.1:18000}"}, want: []string{
			`{dir}/meshfed.yaml:14: error: xds.listen: "10.0.0.1:18000" is not loopback, and gateways get their SVID private keys over xDS: set xds.tls (mutual TLS) or use a unix:// socket`,
		}},
		{name: "listeners not allowed or on one port", replace: []string{
			"xds: {listen: 127.0.0.1:18000}", "xds: {listen: 127.0.0.1:18000}\ndns: {listen: \":15353\"}",
			"admin: {listen: 127.0.0.1:19100}", "admin: {listen: 0.0.0.0:15443}",
		}, want: []string{
			`{dir}/meshfed.yaml:15: error: dns.listen: ":15353" is not an IP address and port such as 127.0.0.1:15353`,
			`{dir}/meshfed.yaml:16: error: admin.listen: "0.0.0.0:15443" is not a loopback address; set admin.allowNonLoopback to serve other hosts`,
			`{dir}/meshfed.yaml:16: error: admin.listen: "0.0.0.0:15443" takes the port of federation.listen "127.0.0.1:15443"; each listener needs a port of its own`,
		}},
		{name: "gateways' and join endpoint's listeners on the agent's ports", replace: []string{
			"  ingress: [{address: 192.0.2.10, port: 15444}]", "  ingress: [{address: 192.0.2.10, port: 15444}]\n  join: {listen: 127.0.0.1:19100}",
			"exports: {file: services.yaml}", "exports: {file: services.yaml}\ngateways:\n  ingress: {listen: {address: 0.0.0.0, port: 15443}}\n  egress: {listen: {address: 127.0.0.1}, ports: {from: 17990, to: 18010}}",
			"xds: {listen: 127.0.0.1:18000}", "xds: {listen: 127.0.0.1:18000}\ndns: {listen: \"127.0.0.1:15443\"}",
		}, want: []string{
			`{dir}/meshfed.yaml:16: error: dns.listen: "127.0.0.1:15443" takes the port of federation.listen "127.0.0.1:15443"; each listener needs a port of its own`,
			`{dir}/meshfed.yaml:17: error: admin.listen: "127.0.0.1:19100" takes the port of federation.join.listen "127.0.0.1:19100"; each listener needs a port of its own`,
			`{dir}/meshfed.yaml:20: error: gateways.ingress.listen: "0.0.0.0:15443" takes the port of federation.listen "127.0.0.1:15443"; each listener needs a port of its own`,
			`{dir}/meshfed.yaml:20: error: gateways.ingress.listen: "0.0.0.0:15443" takes the port of dns.listen "127.0.0.1:15443"; each listener needs a port of its own`,
			`{dir}/meshfed.yaml:21: error: gateways.egress.ports: "127.0.0.1:17990-18010" takes the port of xds.listen "127.0.0.1:18000"; each listener needs a port of its own`,
		}},
		{name: "consumers that are not peers, loopback ingress", replace: []string{
			"{address: 192.0.2.10, port: 15444}", "{address: 127.0.0.1, port: 15444}",
			"exports: {file: services.yaml}", "exports: {file: services.yaml}\nconsul: {export: {tag: x, domainSuffix: mesh-a.example, consumers: [mesh-b, mesh-c]}}",
		}, prepare: func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(strings.Replace(services, "[mesh-b]", "[mesh-b, mesh-d]", 1)), 0o600))
		}, want: []string{
			"{dir}/meshfed.yaml:11: warning: federation.ingress[0].address: 127.0.0.1 is loopback: a peer refuses exported services at a loopback address unless it sets allowLoopback for this mesh (only for a peer on this host), and peers mesh-b here do not set allowLoopback, so they are not on this host; give the ingress gateway's address peers reach",
			`{dir}/meshfed.yaml:16: warning: exports.file: {dir}/services.yaml: service inventory names consumer "mesh-d", which is not a configured peer (peers[].name): nothing is sent to it`,
			`{dir}/meshfed.yaml:17: warning: consul.export.consumers[1]: "mesh-c" is not a configured peer (peers[].name): nothing is sent to it`,
		}},
		{name: "consul doing nothing", replace: []string{"exports: {file: services.yaml}", "exports: {file: services.yaml}\nconsul: {address: 127.0.0.1:8500}"}, want: []string{
			"{dir}/meshfed.yaml:17: warning: consul: neither export nor import is set, so Consul is not used; import: {} registers the imports with the defaults",
		}},
		{name: "damaged store", prepare: func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "meshfed.db"), []byte(strings.Repeat("x", 8192)), 0o600))
		}, want: []string{"{dir}/meshfed.yaml: error: store.path: {dir}/meshfed.db is damaged: invalid database; restore it from a backup (meshfed store backup makes one), " +
			"or move it aside and start again with an empty store: peers send their services again when they reconnect, but the egress ports of the imports may change"}},
		{name: "store in use", prepare: func(t *testing.T, dir string) {
			db, err := bolt.Open(filepath.Join(dir, "meshfed.db"), 0o600, nil)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, db.Close()) })
		}, want: []string{"{dir}/meshfed.yaml: warning: store.path: {dir}/meshfed.db is locked by another process, most likely a running agent; an agent started now would stop with this error unless that process ends first"}},
		{name: "store in use by the agent of this configuration", prepare: func(t *testing.T, dir string) {
			db, err := bolt.Open(filepath.Join(dir, "meshfed.db"), 0o600, nil)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, db.Close()) })
			// Another name of the same file: the owner is compared by file.
			remove, err := WriteStoreOwner(filepath.Join(dir, "meshfed.db"), filepath.Join(dir, ".", "meshfed.yaml"))
			require.NoError(t, err)
			t.Cleanup(remove)
		}, want: []string{}},
		{name: "store in use by the agent of another configuration", prepare: func(t *testing.T, dir string) {
			db, err := bolt.Open(filepath.Join(dir, "meshfed.db"), 0o600, nil)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, db.Close()) })
			remove, err := WriteStoreOwner(filepath.Join(dir, "meshfed.db"), filepath.Join(dir, "other.yaml"))
			require.NoError(t, err)
			t.Cleanup(remove)
		}, want: []string{fmt.Sprintf("{dir}/meshfed.yaml: warning: store.path: {dir}/meshfed.db is locked by the agent of {dir}/other.yaml (process %d); "+
			"an agent started now would stop with this error unless that one ends first: two configurations cannot share a store", os.Getpid())}},
		{name: "bad registry file", prepare: func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "services.yaml"), []byte("services:\n  - name: Inventory\n"), 0o600))
		}, want: []string{`{dir}/meshfed.yaml:16: error: exports.file: {dir}/services.yaml:2: services[0].name: "Inventory" is not a DNS label (lowercase letters, digits and '-', at most 63)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := meshDir(t, tc.replace...)
			if tc.prepare != nil {
				tc.prepare(t, dir)
			}
			got := findings(t, dir, Options{Now: time.Now().Add(tc.now)})
			require.Equal(t, tc.want, withoutTimes(got))
			for _, f := range Check(filepath.Join(dir, "meshfed.yaml"), Options{Now: time.Now().Add(tc.now)}).Findings {
				require.Equal(t, strings.Contains(f.Msg, " expires at "), f.Expiry, f.Msg)
			}
		})
	}
}

// issue writes a dev SVID with another SPIFFE ID into certs/NAME.pem.
func issue(id, name string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		certsDir := filepath.Join(dir, "certs")
		require.NoError(t, certs.IssueSVID(certsDir, spiffeid.RequireFromString(id), certsDir, name))
	}
}

// withoutTimes replaces the RFC 3339 times, which the clock decides, and
// rounds the durations, which a slow test run can shift by a minute.
func withoutTimes(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		l = timeRE.ReplaceAllString(l, "{t}")
		out[i] = minutesRE.ReplaceAllString(l, "${1}0m0s")
	}
	return out
}

var (
	timeRE    = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	minutesRE = regexp.MustCompile(`(\d+h)\d+m0s`)
)
