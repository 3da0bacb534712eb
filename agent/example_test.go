package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/peer"
)

// examples/meshfed.yaml runs as written: laid out as its paths say (the
// development CA from `meshfed certs init --out certs`, a copy of mesh-b's
// bundle as mesh-b-bundle.pem), with only the addresses changed for a test
// on one host, it becomes ready, serves its bundle endpoint, fetches
// mesh-b's bundle from mesh-b's endpoint starting from the bootstrap
// bundle, and connects to mesh-b.
func TestExampleConfigurationRuns(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "mesh-a")
	require.NoError(t, certs.InitDevCA(certs.DevCAOptions{Dir: filepath.Join(dir, "certs"), TrustDomain: spiffeid.RequireTrustDomainFromString("mesh-a.example")}))
	ma := mesh{name: "mesh-a", td: "mesh-a.example", dir: dir}
	mb := newMesh(t, root, "mesh-b")
	b := start(t, mb.config(t, ma, "", "bundleEndpoint: {listen: 127.0.0.1:0}\n"))
	pem, err := os.ReadFile(filepath.Join(mb.dir, "certs", "bundle.pem"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mesh-b-bundle.pem"), pem, 0o644))

	example, err := os.ReadFile("../examples/meshfed.yaml")
	require.NoError(t, err)
	y := string(example)
	for _, r := range [][2]string{
		{"url: https://mesh-b.example:8443", "url: https://" + b.BundleEndpointAddr().String()},
		{"dial: mesh-b.example:15443", "dial: " + b.FederationAddr().String()},
		{"listen: 127.0.0.1:8443", "listen: 127.0.0.1:0"},
		{"listen: 127.0.0.1:15443", "listen: 127.0.0.1:0"},
		{"listen: 127.0.0.1:19100", "listen: 127.0.0.1:0"},
	} {
		require.Equal(t, 1, strings.Count(y, r[0]), "the example no longer holds %q", r[0])
		y = strings.Replace(y, r[0], r[1], 1)
	}
	path := filepath.Join(dir, "meshfed.yaml")
	require.NoError(t, os.WriteFile(path, []byte(y), 0o600))
	c, err := config.Load(path)
	require.NoError(t, err)

	a := start(t, c)
	require.NoError(t, a.Ready())
	require.NotNil(t, a.BundleEndpointAddr())
	require.Eventually(t, func() bool {
		st := a.Peers.Status()
		return len(st) == 1 && st[0].State == peer.Connected
	}, waitFor, 10*time.Millisecond, "mesh-a never connected to mesh-b")
	require.Eventually(t, func() bool { return bundleState(a.Agent, "mesh-b.example").Origin == certs.OriginEndpoint }, waitFor, 10*time.Millisecond)
	require.FileExists(t, filepath.Join(dir, "trust-bundles", "mesh-b.example.json"))
}
