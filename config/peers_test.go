package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// writePeersDir writes the configuration valid beside a peers.d holding
// files (name to content), and returns the configuration's path.
func writePeersDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "peers.d"), 0o750))
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "peers.d", name), []byte(content), 0o600))
	}
	path := filepath.Join(dir, "meshfed.yaml")
	require.NoError(t, os.WriteFile(path, []byte(valid), 0o600))
	return path
}

// A peer written by meshfed peer join is read back with the
// configuration: appended to the peers, its bundle among the trust
// bundles, its relative paths relative to peers.d.
func TestPeerFilesJoinTheConfiguration(t *testing.T) {
	path := writePeersDir(t, nil)
	dir := filepath.Join(filepath.Dir(path), "peers.d")
	pf := PeerFile{
		Peer: Peer{Name: "mesh-c", TrustDomain: "mesh-c.example", SPIFFEIDs: []string{"spiffe://mesh-c.example/meshfed/agent"},
			Callers: []string{"spiffe://mesh-c.example/meshfed/gateway/egress"}, Dial: "192.0.2.9:15443"},
		TrustBundle: &BundleSource{File: "mesh-c" + BundleFileSuffix},
	}
	require.NoError(t, WritePeerFile(dir, pf, []byte("-----BEGIN CERTIFICATE-----\n"), "Written by a test."))
	b, err := os.ReadFile(PeerFilePath(dir, "mesh-c"))
	require.NoError(t, err)
	require.Equal(t, `# Written by a test.
peer:
  name: mesh-c
  trustDomain: mesh-c.example
  spiffeIds: ['spiffe://mesh-c.example/meshfed/agent']
  callers: ['spiffe://mesh-c.example/meshfed/gateway/egress']
  dial: 192.0.2.9:15443
trustBundle:
  file: mesh-c.bundle.pem
`, string(b))

	c, err := Load(path)
	require.NoError(t, err)
	require.Len(t, c.Peers, 2)
	require.Equal(t, "mesh-b", c.Peers[0].Name, "the configuration's peers come first")
	got := c.Peers[1]
	require.Equal(t, DefaultMaxServices, got.MaxServices)
	got.MaxServices = 0
	require.Equal(t, pf.Peer, got)
	require.Equal(t, BundleSource{File: BundleFilePath(dir, "mesh-c")}, c.TrustBundles["mesh-c.example"])
	names, err := PeerFileNames(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"mesh-c"}, names)

	require.NoError(t, RemovePeerFile(dir, "mesh-c"))
	c, err = Load(path)
	require.NoError(t, err)
	require.Len(t, c.Peers, 1)
	require.NotContains(t, c.TrustBundles, "mesh-c.example")
	_, err = os.Stat(BundleFilePath(dir, "mesh-c"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// A peer file that is not one is refused with its own name, line and
// field, as the configuration is.
func TestPeerFileErrorsNameTheFile(t *testing.T) {
	const peer = "peer:\n  name: mesh-c\n  trustDomain: mesh-c.example\n  spiffeIds: [spiffe://mesh-c.example/meshfed/agent]\n  dial: 192.0.2.9:15443\ntrustBundle: {file: mesh-c.bundle.pem}\n"
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"unknown field", "mesh-c.yaml", strings.Replace(peer, "  dial:", "  dials:", 1), "peers.d/mesh-c.yaml:5: dials: unknown field; did you mean dial?"},
		{"name not the file's", "mesh-d.yaml", peer, `peers.d/mesh-d.yaml:2: peer.name: "mesh-c" is not the file's name "mesh-d": a peer's file is NAME.yaml`},
		{"name not a label", "Mesh_C.yaml", strings.Replace(peer, "name: mesh-c", "name: Mesh_C", 1), `peers.d/Mesh_C.yaml:2: peer.name: "Mesh_C" is not a peer name: one lower-case DNS label such as mesh-b`},
		{"bad dial", "mesh-c.yaml", strings.Replace(peer, "192.0.2.9:15443", "192.0.2.9", 1), `peers.d/mesh-c.yaml:5: peer.dial: "192.0.2.9": missing port in address`},
		{"a peer of the configuration", "mesh-b.yaml", strings.ReplaceAll(peer, "mesh-c", "mesh-b"), `peers.d/mesh-b.yaml:2: peer.name: "mesh-b" is also peers[0] of `},
		{"a bundle the configuration has", "mesh-c.yaml", strings.ReplaceAll(strings.Replace(peer, "name: mesh-c", "name: mesh-c", 1), "mesh-c.example", "mesh-b.example"), "peers.d/mesh-c.yaml:6: trustBundle: trustBundles.mesh-b.example of "},
		{"no bundle for its trust domain", "mesh-c.yaml", strings.Replace(peer, "trustBundle: {file: mesh-c.bundle.pem}\n", "", 1), `peers.d/mesh-c.yaml:3: peer.trustDomain: no trustBundles entry for "mesh-c.example"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writePeersDir(t, map[string]string{tc.file: tc.content})
			_, err := Load(path)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
