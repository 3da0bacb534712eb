package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/meshfed/meshfed/certs"
)

// agentDir writes what a user writes for one agent: the dev CA of
// mesh-a.example, mesh-b's bundle, a registry file and the configuration.
// It returns the folder; the configuration is meshfed.yaml in it.
func agentDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for td, sub := range map[string]string{"mesh-a.example": "certs", "mesh-b.example": "b"} {
		require.NoError(t, certs.InitDevCA(certs.DevCAOptions{Dir: filepath.Join(dir, sub), TrustDomain: spiffeid.RequireTrustDomainFromString(td)}))
	}
	cfg := `trustDomain: mesh-a.example
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  mesh-a.example: {file: certs/bundle.pem}
  mesh-b.example: {file: b/bundle.pem}
federation: {listen: 127.0.0.1:0}
peers: [{name: mesh-b, trustDomain: mesh-b.example, spiffeIds: [spiffe://mesh-b.example/meshfed/agent]}]
xds: {listen: 127.0.0.1:0}
admin: {listen: 127.0.0.1:0}
exports: {file: services.yaml}
`
	services := `services:
  - name: inventory
    fqdn: inventory.mesh-a.example
    consumers: [mesh-b]
    ports: [{name: http, port: 8080, protocol: HTTP, endpoints: [{address: 10.0.0.1, port: 9080}]}]
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meshfed.yaml"), []byte(cfg), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(services), 0o600))
	return dir
}

// runAgent runs `meshfed run` in this process and returns its exit code and
// the last line it wrote to stderr. Every case here fails before the agent
// serves, so it returns.
func runAgent(t *testing.T, dir string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute([]string{"run", "--config", filepath.Join(dir, "meshfed.yaml")}, &stdout, &stderr)
	require.NotContains(t, stderr.String(), "panic")
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	return code, lines[len(lines)-1]
}

func TestRunRefusesToStartAndSaysWhy(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string // {dir} is the agent's folder
	}{
		{"missing certificate", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "certs", "egress.pem")))
		}, "meshfed: {dir}/meshfed.yaml:4: error: identity.egress.cert: open {dir}/certs/egress.pem: no such file or directory"},
		{"missing key", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "certs", "ingress-key.pem")))
		}, "meshfed: {dir}/meshfed.yaml:5: error: identity.ingress.key: open {dir}/certs/ingress-key.pem: no such file or directory"},
		{"key of another certificate", func(t *testing.T, dir string) {
			copyFile(t, filepath.Join(dir, "certs", "agent-key.pem"), filepath.Join(dir, "certs", "egress-key.pem"))
		}, "meshfed: {dir}/meshfed.yaml:4: error: identity.egress: the private key in {dir}/certs/egress-key.pem does not belong to the certificate in {dir}/certs/egress.pem"},
		{"bundle that is not PEM", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "b", "bundle.pem"), []byte("not a bundle\n"), 0o600))
		}, "meshfed: {dir}/meshfed.yaml:8: error: trustBundles.mesh-b.example.file: {dir}/b/bundle.pem: cannot parse certificate: no PEM blocks found"},
		{"registry file with a bad port", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "services.yaml"), []byte("services:\n  - name: inventory\n    ports: [{name: http, port: abc}]\n"), 0o600))
		}, "meshfed: {dir}/meshfed.yaml:13: error: exports.file: {dir}/services.yaml:3: services[0].ports[0].port: got \"abc\", want a number"},
		{"damaged store", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "meshfed.db"), bytes.Repeat([]byte("x"), 8192), 0o600))
		}, `meshfed: store.path: store: open "{dir}/meshfed.db": damaged: invalid database; restore it from a backup (meshfed store backup makes one), ` +
			`or move it aside and start again with an empty store: peers send their services again when they reconnect, but the egress ports of the imports may change`},
		{"store held by another process", func(t *testing.T, dir string) {
			db, err := bolt.Open(filepath.Join(dir, "meshfed.db"), 0o600, nil)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, db.Close()) })
		}, `meshfed: store.path: store: open "{dir}/meshfed.db": locked by another process (gave up after 2s; is another meshfed running on it?)`},
		{"plaintext xDS beyond loopback", func(t *testing.T, dir string) {
			cfg, err := os.ReadFile(filepath.Join(dir, "meshfed.yaml"))
			require.NoError(t, err)
			cfg = bytes.Replace(cfg, []byte("xds: {listen: 127.0.0.1:0}"), []byte("xds: {listen: 0.0.0.0:18000}"), 1)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "meshfed.yaml"), cfg, 0o600))
		}, `meshfed: {dir}/meshfed.yaml:11: error: xds.listen: "0.0.0.0:18000" is not loopback, and gateways get their SVID private keys over xDS: set xds.tls (mutual TLS) or use a unix:// socket`},
		{"empty configuration", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "meshfed.yaml"), nil, 0o600))
		}, "meshfed: {dir}/meshfed.yaml: error: the file is empty; a configuration needs at least trustDomain, identity and trustBundles (examples/meshfed.yaml has every field)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := agentDir(t)
			tc.break_(t, dir)
			code, last := runAgent(t, dir)
			require.Equal(t, 1, code)
			require.Equal(t, strings.ReplaceAll(tc.want, "{dir}", dir), last)
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o600))
}

// The binary itself: the error is printed once, the exit status is 1, and
// nothing panics.
func TestRunBinaryExitsOneOnAStartupError(t *testing.T) {
	bin := buildMeshfed(t)
	dir := agentDir(t)
	require.NoError(t, os.Remove(filepath.Join(dir, "certs", "egress.pem")))

	cmd := exec.Command(bin, "run", "--config", filepath.Join(dir, "meshfed.yaml"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 1, exit.ExitCode())
	want := "meshfed: " + dir + "/meshfed.yaml:4: error: identity.egress.cert: open " + dir + "/certs/egress.pem: no such file or directory\n"
	require.Equal(t, want, stderr.String())
}
