package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/xds"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// startAgent runs one agent from a configuration written like a user would,
// with a peer that never connects.
func startAgent(t *testing.T) (*agent.Agent, string) {
	t.Helper()
	return startAgentDialing(t, "")
}

// startAgentDialing is startAgent with a peer this agent dials at dial
// (none when empty).
func startAgentDialing(t *testing.T, dial string) (*agent.Agent, string) {
	t.Helper()
	return startAgentWith(t, dial, "admin: {listen: 127.0.0.1:0}\n")
}

// startAgentWith is startAgentDialing with the given admin block, and a
// gateway of each role connected.
func startAgentWith(t *testing.T, dial, adminBlock string) (*agent.Agent, string) {
	t.Helper()
	a, dir := startAgentAlone(t, dial, adminBlock)
	connectGateways(t, a)
	return a, dir
}

// startAgentAlone is startAgentWith without gateways.
func startAgentAlone(t *testing.T, dial, adminBlock string) (*agent.Agent, string) {
	t.Helper()
	dir := t.TempDir()
	_, err := run(t, "certs", "init", "--trust-domain", "mesh-a.example", "--out", filepath.Join(dir, "certs"))
	require.NoError(t, err)
	_, err = run(t, "certs", "init", "--trust-domain", "mesh-b.example", "--out", filepath.Join(dir, "b"))
	require.NoError(t, err)
	cfg := `trustDomain: mesh-a.example
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  mesh-a.example: {file: certs/bundle.pem}
  mesh-b.example: {file: b/bundle.pem}
federation: {listen: 127.0.0.1:0}
peers: [{name: mesh-b, trustDomain: mesh-b.example, spiffeIds: [spiffe://mesh-b.example/meshfed/agent], dial: "` + dial + `"}]
xds: {listen: 127.0.0.1:0}
` + adminBlock + `exports: {file: services.yaml}
`
	services := `services:
  - name: inventory
    fqdn: inventory.mesh-a.example
    consumers: [mesh-b]
    ports: [{name: http, port: 8080, protocol: HTTP, endpoints: [{address: 10.0.0.1, port: 9080}]}]
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meshfed.yaml"), []byte(cfg), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(services), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "admin.token"), []byte(strings.Repeat("t", 40)+"\n"), 0o600))
	out, err := run(t, "config", "validate", filepath.Join(dir, "meshfed.yaml"))
	require.NoError(t, err)
	require.Contains(t, out, "meshfed.yaml: ok")

	c, err := config.Load(filepath.Join(dir, "meshfed.yaml"))
	require.NoError(t, err)
	a, err := agent.New(context.Background(), c, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	servetest.Start(t, a.Listening(), a.Run)
	return a, dir
}

// connectGateways connects a gateway of each role to the agent, as Envoy
// does, and waits until both hold what it serves them: meshfed status
// counts a role without a gateway as a problem.
func connectGateways(t *testing.T, a *agent.Agent, opts ...adsclient.Options) {
	t.Helper()
	conn, err := grpc.NewClient(xds.Target(a.XDSAddr()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	if len(opts) == 0 {
		opts = []adsclient.Options{{NodeID: config.DefaultEgressNodeID, Delta: true}, {NodeID: config.DefaultIngressNodeID, Delta: true}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, o := range opts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = adsclient.New(o).Run(ctx, conn, nil)
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	require.Eventually(t, func() bool {
		v, err := a.Gateways(context.Background())
		if err != nil || len(v.([]agent.GatewayView)) < len(opts) {
			return false
		}
		for _, g := range v.([]agent.GatewayView) {
			if len(g.Types) < len(adsclient.Types) {
				return false
			}
			for _, ty := range g.Types {
				if ty.State != agent.Synced && ty.State != agent.Nacked {
					return false
				}
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "the gateways never synced")
}

func TestStatusAndCatalogAgainstARunningAgent(t *testing.T) {
	a, _ := startAgent(t)
	url := "http://" + a.AdminAddr().String()

	out, err := run(t, "status", "--agent", url)
	require.NoError(t, err)
	require.Contains(t, out, "mesh mesh-a.example (ready)")
	require.Regexp(t, `PEER +TRUST DOMAIN +STATE +SINCE +IMPORTED +EXPORTED +NEGOTIATED +LAST SENT +LAST RECEIVED +LAST ERROR\n`+
		`mesh-b +mesh-b\.example +waiting +\S+ ago +0 +1 +- +- +- +-\n`, out)

	out, err = run(t, "catalog", "exports", "--agent", url)
	require.NoError(t, err)
	require.Regexp(t, `inventory +inventory\.mesh-a\.example +terminate +http/8080/HTTP +mesh-b +-`, out)

	out, err = run(t, "catalog", "exports", "--agent", url, "-o", "json")
	require.NoError(t, err)
	var exports []agent.ExportView
	require.NoError(t, json.Unmarshal([]byte(out), &exports))
	require.Len(t, exports, 1)
	require.Equal(t, "inventory.mesh-a.example", exports[0].FQDN)

	out, err = run(t, "catalog", "imports", "--agent", url, "-o", "yaml")
	require.NoError(t, err)
	require.Equal(t, "[]\n", out)

	_, err = run(t, "catalog", "imports", "--agent", url, "-o", "xml")
	require.EqualError(t, err, `--output: "xml" is not table, json or yaml`)
}

// A peer that cannot be dialed makes meshfed status exit with 2, and say
// which peer and why on standard error; the table is printed all the same.
func TestStatusExitsTwoWhenAPeerFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	a, _ := startAgentDialing(t, dead)
	url := "http://" + a.AdminAddr().String()
	var out string
	require.Eventually(t, func() bool {
		out, err = run(t, "status", "--agent", url, "-o", "json")
		return err != nil
	}, 20*time.Second, 20*time.Millisecond)
	var ee *exitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 2, ee.code)
	require.Contains(t, out, "meshfed status: peer mesh-b is failing (backoff): ")
	require.Contains(t, out, dead)
	require.Equal(t, 2, execute([]string{"status", "--agent", url}, io.Discard, io.Discard))
}

func TestStatusWithoutAnAgent(t *testing.T) {
	_, err := run(t, "status", "--agent", "http://127.0.0.1:1")
	require.ErrorContains(t, err, "cannot reach the meshfed agent at http://127.0.0.1:1")
}

// Peer and service names complete from the running agent, and filter.
func TestNamesCompleteFromTheAgent(t *testing.T) {
	a, _ := startAgent(t)
	url := "http://" + a.AdminAddr().String()
	out, err := run(t, "__complete", "catalog", "imports", "--agent", url, "")
	require.NoError(t, err)
	require.Equal(t, "mesh-b\n:4\n", firstLines(out, 2))
	out, err = run(t, "__complete", "catalog", "exports", "--agent", url, "")
	require.NoError(t, err)
	require.Equal(t, "inventory\n:4\n", firstLines(out, 2))
	// Without an agent there is nothing to offer, and no error.
	out, err = run(t, "__complete", "catalog", "exports", "--agent", "http://127.0.0.1:1", "")
	require.NoError(t, err)
	require.Equal(t, ":4\n", firstLines(out, 1))

	out, err = run(t, "catalog", "exports", "--agent", url, "inventory")
	require.NoError(t, err)
	require.Contains(t, out, "inventory.mesh-a.example")
	// A name that is none is an error, not an empty table.
	_, err = run(t, "catalog", "exports", "--agent", url, "payments")
	require.EqualError(t, err, `"payments" is not a service this agent exports (exports: inventory)`)
	_, err = run(t, "catalog", "imports", "--agent", url, "mesh-c")
	require.EqualError(t, err, `"mesh-c" is not a peer of this agent (peers: mesh-b)`)
	out, err = run(t, "catalog", "imports", "--agent", url, "mesh-b")
	require.NoError(t, err)
	require.Contains(t, out, "(nothing imported)\n")
}

// firstLines is the first n lines of out: cobra's __complete writes its
// directive's explanation to the same writer after them.
func firstLines(out string, n int) string {
	lines := strings.SplitAfter(out, "\n")
	return strings.Join(lines[:min(n, len(lines))], "")
}

// A configuration that fails its checks still gives its admin address, so
// that meshfed reload reaches the agent and hears why it refuses the file.
func TestAdminAddressOfAFileThatFailsItsChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meshfed.yaml")
	require.NoError(t, os.WriteFile(path, []byte("admin: {listen: 127.0.0.1:1234, tokenFile: admin.token}\nfederation: {grace: soon}\n"), 0o600))
	a, err := adminOf(path)
	require.NoError(t, err)
	require.Equal(t, config.Admin{Listen: "127.0.0.1:1234", TokenFile: filepath.Join(dir, "admin.token")}, a)

	require.NoError(t, os.WriteFile(path, []byte("federation: {grace: soon}\n"), 0o600))
	a, err = adminOf(path)
	require.NoError(t, err)
	require.Equal(t, config.Admin{Listen: "127.0.0.1:19100"}, a)

	require.NoError(t, os.WriteFile(path, []byte("admin: [\n"), 0o600))
	_, err = adminOf(path)
	require.ErrorContains(t, err, path+":")
}

// nonLoopbackIP is an address of this host that is not loopback: a client
// on this host that dials it comes from it, as another host would.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String()
		}
	}
	t.Skip("this host has no IPv4 address beyond loopback")
	return ""
}

// An agent whose admin API serves other hosts answers them only with
// admin.tokenFile's token, which the commands send: read from the agent's
// configuration (--config), or from --token-file.
func TestCommandsSendTheAdminToken(t *testing.T) {
	ip := nonLoopbackIP(t)
	a, dir := startAgentWith(t, "", "admin: {listen: \""+ip+":0\", allowNonLoopback: true, tokenFile: admin.token}\n")
	url := "http://" + a.AdminAddr().String()

	_, err := run(t, "status", "--agent", url)
	require.ErrorContains(t, err, "answered GET /api/v1/status with 401 Unauthorized: /api/v1/status answers a client beyond loopback only with the bearer token of admin.tokenFile (Authorization: Bearer <token>)")

	out, err := run(t, "status", "--agent", url, "--config", filepath.Join(dir, "meshfed.yaml"))
	require.NoError(t, err)
	require.Contains(t, out, "mesh mesh-a.example (ready)")
	out, err = run(t, "catalog", "exports", "--agent", url, "--token-file", filepath.Join(dir, "admin.token"))
	require.NoError(t, err)
	require.Contains(t, out, "inventory.mesh-a.example")
}

// An SVID written over a good one but refused (here: expired) makes
// meshfed status exit with 2 and say which file and why, while the table
// shows the SVID still in use; a good one written back ends it.
func TestStatusExitsTwoOnARefusedSVID(t *testing.T) {
	a, dir := startAgent(t)
	url := "http://" + a.AdminAddr().String()
	out, err := run(t, "status", "--agent", url)
	require.NoError(t, err)
	require.Regexp(t, `ROLE +SPIFFE ID +SERIAL +EXPIRES +REFUSED\n`+
		`agent +spiffe://mesh-a\.example/meshfed/agent +[0-9a-f]+ +\S+ +-\n`+
		`egress +spiffe://mesh-a\.example/meshfed/gateway/egress +[0-9a-f]+ +\S+ +-\n`+
		`ingress +spiffe://mesh-a\.example/meshfed/gateway/ingress +[0-9a-f]+ +\S+ +-\n`, out)
	require.Regexp(t, `TRUST DOMAIN +SOURCE +ORIGIN +CAS +LAST FETCH +NEXT FETCH +LAST ERROR\n`+
		`mesh-a\.example +file \S+/certs/bundle\.pem +file +1 +- +- +-\n`, out)

	td := spiffeid.RequireTrustDomainFromString("mesh-a.example")
	id, err := certs.RoleID(td, model.Ingress)
	require.NoError(t, err)
	expired := time.Now().Add(-time.Hour)
	ca := filepath.Join(dir, "certs")
	require.NoError(t, certs.IssueSVID(ca, id, ca, "ingress", certs.WithValidity(expired.Add(-time.Hour), expired)))
	require.Eventually(t, func() bool {
		out, err = run(t, "status", "--agent", url)
		return err != nil
	}, 20*time.Second, 20*time.Millisecond)
	var ee *exitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 2, ee.code)
	require.Contains(t, out, "meshfed status: identity.ingress: an SVID was refused since ")
	require.Contains(t, out, "(serial ")
	require.Contains(t, out, ") expired at "+expired.UTC().Format(time.RFC3339)+" (in "+filepath.Join(ca, "ingress.pem")+"); the last good one (serial ")
	require.Regexp(t, `ingress +spiffe://mesh-a\.example/meshfed/gateway/ingress +[0-9a-f]+ +\S+ +\S+ ago: certs: the SVID`, out)

	require.NoError(t, certs.IssueSVID(ca, id, ca, "ingress"))
	require.Eventually(t, func() bool {
		_, err = run(t, "status", "--agent", url)
		return err == nil
	}, 20*time.Second, 20*time.Millisecond)
}
