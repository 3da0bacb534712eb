package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/peer"
)

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// peeringDir writes the configuration of mesh (mesh-a or mesh-b), which
// exports inventory to other and has no peer, nor other's bundle; with
// join, a join endpoint.
func peeringDir(t *testing.T, root, mesh, other string, join bool) string {
	t.Helper()
	dir := filepath.Join(root, mesh)
	require.NoError(t, certs.InitDevCA(certs.DevCAOptions{Dir: filepath.Join(dir, "certs"), TrustDomain: spiffeid.RequireTrustDomainFromString(mesh + ".example")}))
	joinLine := ""
	if join {
		joinLine = ", join: {listen: " + freeAddr(t) + "}"
	}
	cfg := fmt.Sprintf(`trustDomain: %[1]s.example
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  %[1]s.example: {file: certs/bundle.pem}
federation: {listen: %[2]s, ingress: [{address: 127.0.0.1, port: 15444}]%[3]s}
xds: {listen: 127.0.0.1:0}
admin: {listen: %[4]s}
exports: {file: services.yaml}
`, mesh, freeAddr(t), joinLine, freeAddr(t))
	services := fmt.Sprintf(`services:
  - name: inventory
    fqdn: inventory.%s.example
    consumers: [%s]
    ports: [{name: http, port: 8080, protocol: HTTP, endpoints: [{address: 10.0.0.1, port: 9080}]}]
`, mesh, other)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meshfed.yaml"), []byte(cfg), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(services), 0o600))
	return filepath.Join(dir, "meshfed.yaml")
}

// runPeerAgent runs the agent of path in this process until the test ends.
func runPeerAgent(t *testing.T, path string) *agent.Agent {
	t.Helper()
	cfg, err := config.Load(path)
	require.NoError(t, err)
	a, err := agent.New(context.Background(), cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(filepath.Base(filepath.Dir(path))), prometheus.NewRegistry())
	require.NoError(t, err)
	a.ConfigPath = path
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Listening():
	case err := <-done:
		t.Fatalf("agent stopped at start: %v", err)
	}
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return a
}

// meshfed runs the command line in this process: its exit code, stdout
// and stderr.
func meshfed(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := execute(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// meshfed peer invite on one agent and meshfed peer join on the other make
// them peers, each reloaded by the command; peer list shows what the
// joins wrote, and peer remove ends it.
func TestPeerInviteJoinListRemove(t *testing.T) {
	root := t.TempDir()
	pathA := peeringDir(t, root, "mesh-a", "mesh-b", true)
	pathB := peeringDir(t, root, "mesh-b", "mesh-a", false)
	a := runPeerAgent(t, pathA)
	b := runPeerAgent(t, pathB)

	code, _, stderr := meshfed("peer", "invite", "mesh-a", "--config", pathB)
	require.Equal(t, 1, code)
	require.Equal(t, "meshfed: federation.join: not set, so no mesh can come to join: set federation.join.listen (such as 127.0.0.1:15445) and restart the agent\n", stderr)
	code, _, stderr = meshfed("peer", "invite", "mesh-b", "--config", pathA, "--ttl", "30s")
	require.Equal(t, 1, code)
	require.Equal(t, "meshfed: --ttl: 30s is out of range 1m-168h0m0s\n", stderr)

	code, token, stderr := meshfed("peer", "invite", "mesh-b", "--config", pathA)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `^meshfed: invitation [0-9a-f]{24} for mesh-b, good for one join until \S+; on the other mesh's agent: meshfed peer join TOKEN\n$`, stderr)
	token = strings.TrimSpace(token)

	code, out, stderr := meshfed("peer", "join", token, "--config", pathB)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, fmt.Sprintf("joined mesh-a.example: peer mesh-a in %s, dialed at %s; it calls this mesh mesh-b\nthe agent reloaded and applied it\n",
		filepath.Join(root, "mesh-b", "peers.d", "mesh-a.yaml"), a.FederationAddr()), out)
	require.Eventually(t, func() bool { return len(a.Catalog.Imports()) == 1 && len(b.Catalog.Imports()) == 1 }, 30*time.Second, 20*time.Millisecond,
		"each agent imports the other's inventory")

	code, _, stderr = meshfed("peer", "join", token, "--config", pathB)
	require.Equal(t, 1, code)
	require.Equal(t, "meshfed: mesh-a is a peer already (trust domain mesh-a.example); give the inviter another name with --name, or meshfed peer remove mesh-a\n", stderr)

	code, out, stderr = meshfed("peer", "list", "--config", pathA, "-o", "json")
	require.Equal(t, 0, code, stderr)
	var list PeerListResult
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Equal(t, PeerListResult{Peers: []PeerView{{Name: "mesh-b", TrustDomain: "mesh-b.example", Source: filepath.Join(root, "mesh-a", "peers.d", "mesh-b.yaml")}},
		Invitations: []peer.PendingInvitation{}}, list)
	code, out, _ = meshfed("peer", "list", "--config", pathB)
	require.Equal(t, 0, code)
	require.Equal(t, fmt.Sprintf("PEER    TRUST DOMAIN    DIAL%sFILE\nmesh-a  mesh-a.example  %s  %s\n",
		strings.Repeat(" ", len(a.FederationAddr().String())-2), a.FederationAddr(), filepath.Join(root, "mesh-b", "peers.d", "mesh-a.yaml")), out)

	code, out, stderr = meshfed("peer", "remove", "mesh-a", "--config", pathB)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, fmt.Sprintf("removed peer mesh-a (%s)\nthe agent reloaded and applied it\n", filepath.Join(root, "mesh-b", "peers.d", "mesh-a.yaml")), out)
	require.Eventually(t, func() bool { return len(b.Catalog.Imports()) == 0 }, 30*time.Second, 20*time.Millisecond, "mesh-b no longer imports")
	code, out, _ = meshfed("peer", "list", "--config", pathB)
	require.Equal(t, 0, code)
	require.Equal(t, "(no peers)\n", out)
	code, _, stderr = meshfed("peer", "remove", "mesh-a", "--config", pathB)
	require.Equal(t, 1, code)
	require.Equal(t, fmt.Sprintf("meshfed: %s: no peer mesh-a there, and no invitation for it\n", filepath.Join(root, "mesh-b", "peers.d")), stderr)
}
