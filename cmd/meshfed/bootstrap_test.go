package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/testing/protocmp"

	envoyconfigs "github.com/meshfed/meshfed/envoy-configs"
	"github.com/meshfed/meshfed/envoyrun/envoytest"
)

var update = flag.Bool("update", false, "write envoy-configs/*.yaml from meshfed bootstrap")

// vmConfig is the agent configuration the bootstraps of envoy-configs are
// written for.
const vmConfig = "../../deploy/systemd/meshfed.yaml"

func runBootstrap(t *testing.T, args ...string) []byte {
	t.Helper()
	var out, errOut bytes.Buffer
	code := execute(append([]string{"bootstrap"}, args...), &out, &errOut)
	require.Equal(t, 0, code, "meshfed bootstrap %s: %s", strings.Join(args, " "), errOut.String())
	return out.Bytes()
}

// TestBootstrapFilesAreGenerated: envoy-configs/*.yaml are what meshfed
// bootstrap writes, so an operator's copy and the command never disagree.
func TestBootstrapFilesAreGenerated(t *testing.T) {
	for _, role := range envoyconfigs.Roles {
		t.Run(role, func(t *testing.T) {
			got := runBootstrap(t, role, "--config", vmConfig)
			file := filepath.Join("..", "..", "envoy-configs", role+".yaml")
			if *update {
				require.NoError(t, os.WriteFile(file, got, 0o644))
			}
			want, err := os.ReadFile(file)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got), "%s drifted from meshfed bootstrap %s: go test ./cmd/meshfed -run TestBootstrapFilesAreGenerated -update", file, role)
		})
	}
}

// TestBootstrapIsTheRenderedFile: what the command writes for a set of
// flags is, field for field, the file of envoy-configs with the same
// Params applied, as the tests, the demo and the bench render it.
func TestBootstrapIsTheRenderedFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "meshfed.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`trustDomain: mesh-a.example
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  mesh-a.example: {file: certs/bundle.pem}
xds: {listen: "0.0.0.0:18000", tls: {}}
gateways:
  ingress: {nodeIds: [ingress-1, ingress-2]}
`), 0o600))
	certs := filepath.Join(dir, "certs")
	for _, tc := range []struct {
		role   string
		args   []string
		params envoyconfigs.Params
	}{{
		role: "ingress",
		args: []string{"--xds", "meshfed.mesh-a.svc:18000"},
		params: envoyconfigs.Params{NodeID: "ingress-1", XDS: "meshfed.mesh-a.svc:18000", XDSTLS: &envoyconfigs.ClientTLS{
			CertFile: filepath.Join(certs, "ingress.pem"), KeyFile: filepath.Join(certs, "ingress-key.pem"),
			BundleFile: filepath.Join(certs, "bundle.pem"), AgentID: "spiffe://mesh-a.example/meshfed/agent",
		}},
	}, {
		role: "egress",
		args: []string{"--xds", "10.0.0.1:18000", "--instance", "2", "--node-id", "egress-7", "--stats", "0.0.0.0:15090",
			"--max-heap", "512Mi", "--xds-cert", "/c/e.pem", "--xds-key", "/c/e-key.pem", "--xds-bundle", "/c/b.pem", "--agent-id", "spiffe://mesh-a.example/agent"},
		params: envoyconfigs.Params{NodeID: "egress-7", Admin: "127.0.0.1:19004", Stats: "0.0.0.0:15090", XDS: "10.0.0.1:18000", MaxHeapBytes: 512 << 20,
			XDSTLS: &envoyconfigs.ClientTLS{CertFile: "/c/e.pem", KeyFile: "/c/e-key.pem", BundleFile: "/c/b.pem", AgentID: "spiffe://mesh-a.example/agent"}},
	}} {
		t.Run(tc.role+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := envoyconfigs.ParseBootstrap(runBootstrap(t, append([]string{tc.role, "--config", cfg}, tc.args...)...))
			require.NoError(t, err)
			want, err := envoyconfigs.Load(tc.role + ".yaml")
			require.NoError(t, err)
			require.NoError(t, envoyconfigs.Apply(want, tc.params))
			if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
				t.Fatalf("meshfed bootstrap differs from the rendered %s.yaml (-rendered +command):\n%s", tc.role, d)
			}
		})
	}
}

func TestBootstrapInstancesOnOneHost(t *testing.T) {
	out := string(runBootstrap(t, "ingress", "--config", vmConfig, "--instance", "1"))
	require.Contains(t, out, "#   envoy --config-path FILE --base-id 3 --drain-time-s 5\n")
	b, err := envoyconfigs.ParseBootstrap([]byte(out))
	require.NoError(t, err)
	require.Equal(t, uint32(19003), b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue())
	require.Equal(t, uint32(15093), b.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue())
	require.Contains(t, string(runBootstrap(t, "egress", "--config", vmConfig, "--instance", "1")), "--base-id 2 --drain-time-s 5\n")
}

func TestBootstrapErrors(t *testing.T) {
	dir := t.TempDir()
	anyAddr := filepath.Join(dir, "any.yaml")
	base, err := os.ReadFile(vmConfig)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(anyAddr, bytes.Replace(base, []byte("unix:///run/meshfed/xds.sock"), []byte(`"0.0.0.0:18000"`+"\n  tls: {}"), 1), 0o600))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sidecar", "--config", vmConfig}, `meshfed: role "sidecar": a gateway is egress or ingress`},
		{[]string{"egress", "--config", vmConfig, "--admin", "0.0.0.0:19000"}, `meshfed: --admin "0.0.0.0:19000": the admin interface can quit Envoy; it listens on a loopback IP only`},
		{[]string{"egress", "--config", vmConfig, "--max-heap", "1GB"}, `meshfed: --max-heap: "1GB" is not a size such as 1073741824, 512Mi or 1Gi`},
		{[]string{"egress", "--config", vmConfig, "--stats", "127.0.0.1:19000"}, `meshfed: stats "127.0.0.1:19000": the admin interface listens there`},
		{[]string{"egress", "--config", vmConfig, "--xds", "unix://xds.sock"}, `meshfed: xds "unix://xds.sock": the socket's path must be absolute (unix:///path)`},
		{[]string{"egress", "--config", anyAddr}, `meshfed: xds.listen "0.0.0.0:18000" is every address of the agent's host: give the address this gateway dials with --xds`},
		{[]string{"egress", "--config", filepath.Join(dir, "none.yaml")}, "none.yaml: no such file or directory"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			require.Equal(t, 1, execute(append([]string{"bootstrap"}, tc.args...), &out, &errOut))
			require.Contains(t, errOut.String(), tc.want)
			require.Empty(t, out.String())
		})
	}
}

// TestBootstrapRunsInEnvoy: the real Envoy accepts what the command writes,
// over the Unix socket and over mutual TLS with real certificate files.
func TestBootstrapRunsInEnvoy(t *testing.T) {
	envoy := envoytest.Binary(t)
	dir := t.TempDir()
	require.Equal(t, 0, execute([]string{"certs", "init", "--trust-domain", "mesh-a.example", "--out", filepath.Join(dir, "certs")}, &bytes.Buffer{}, &bytes.Buffer{}))
	cfg := filepath.Join(dir, "meshfed.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`trustDomain: mesh-a.example
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  mesh-a.example: {file: certs/bundle.pem}
`), 0o600))
	for _, role := range envoyconfigs.Roles {
		for name, args := range map[string][]string{
			"unix": nil,
			"mtls": {"--xds", "localhost:18000", "--xds-cert", filepath.Join(dir, "certs", role+".pem"), "--xds-key", filepath.Join(dir, "certs", role+"-key.pem"), "--xds-bundle", filepath.Join(dir, "certs", "bundle.pem")},
		} {
			t.Run(role+" "+name, func(t *testing.T) {
				file := filepath.Join(t.TempDir(), "envoy.yaml")
				runBootstrap(t, append([]string{role, "--config", cfg, "-o", file}, args...)...)
				out, err := exec.Command(envoy, "--mode", "validate", "--config-path", file, "--disable-hot-restart", "-l", "warn").CombinedOutput()
				require.NoError(t, err, "envoy --mode validate:\n%s", out)
				require.Contains(t, string(out), "configuration '"+file+"' OK")
			})
		}
	}
}
