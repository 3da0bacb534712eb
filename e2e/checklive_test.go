package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/model"
)

// liveResult is the part of meshfed check --live -o json this test reads.
type liveResult struct {
	Errors int `json:"errors"`
	Peers  []struct {
		Name      string `json:"name"`
		Address   string `json:"address"`
		Reachable bool   `json:"reachable"`
		Handshake bool   `json:"handshake"`
		Identity  string `json:"identity"`
		Bundle    string `json:"bundle"`
		OK        bool   `json:"ok"`
		Reason    string `json:"reason"`
	} `json:"peers"`
	Imports []liveImport `json:"imports"`
}

type liveImport struct {
	Peer       string `json:"peer"`
	Service    string `json:"service"`
	Instance   string `json:"instance"`
	SNI        string `json:"sni"`
	Ingress    string `json:"ingress"`
	Authorized bool   `json:"authorized"`
	Identity   string `json:"identity"`
	Reason     string `json:"reason"`
}

// meshfed check --live shakes hands, from this host, with the peer's
// agent as this agent and with the owner's ingress as the egress gateway,
// with each import's server name: mesh-b's payments takes mesh-a, its
// vault (a passthrough backend that admits another caller) refuses it,
// and the check says so for that import alone, with the reason, and fails.
func TestCheckLiveTriesThePeersAndTheImports(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "meshfed")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/meshfed/meshfed/cmd/meshfed").CombinedOutput()
	require.NoError(t, err, "%s", out)

	var vault *upstream.TLSServer
	prepare := func(m *mesh) {
		if m.Name != "mesh-b" {
			return
		}
		svid := m.workloadSVID(t, "/ns/default/sa/vault")
		other := spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(m.peer.TrustDomain()), "/ns/default/sa/someone-else")
		var err error
		vault, err = upstream.TLSEcho("vault", "", tlsconfig.MTLSServerConfig(svid, m.peer.bundle(t), tlsconfig.AuthorizeID(other)))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, vault.Close()) })
		m.ExtraServices = fmt.Sprintf(`  - name: vault
    fqdn: vault.mesh-b.example
    mode: passthrough
    backendSpiffeIds: [%s]
    consumers: [mesh-a]
    ports:
      - {name: tcp, port: 8200, protocol: TCP, endpoints: [{address: 127.0.0.1, port: %d}]}
`, svid.ID, vault.Port())
	}
	a, b := federate(t, options{prepare: prepare})
	eventually(t, "mesh-a imports vault", func(context.Context) error {
		if n := len(a.agent.Catalog.Imports()); n != 2 {
			return fmt.Errorf("%d imports", n)
		}
		return nil
	})

	// mesh-b dials mesh-a: it checks mesh-a's agent, and mesh-a's
	// inventory, which takes it.
	res, code := checkLive(t, bin, b)
	require.Equal(t, 0, code, "%+v", res)
	require.Len(t, res.Peers, 1)
	p := res.Peers[0]
	require.True(t, p.Reachable && p.Handshake && p.OK, "%+v", p)
	require.Equal(t, "spiffe://mesh-a.example/meshfed/agent", p.Identity)
	ingressA := fmt.Sprintf("%s:%d", a.IP, a.IngressPort)
	ingressID := "spiffe://mesh-a.example/meshfed/gateway/ingress"
	require.Equal(t, []liveImport{
		{Peer: "mesh-a", Service: "inventory", Instance: "grpc", SNI: model.DefaultSNI(grpcPort, a.FQDN()), Ingress: ingressA, Authorized: true, Identity: ingressID},
		{Peer: "mesh-a", Service: "inventory", Instance: "http", SNI: model.DefaultSNI(httpPort, a.FQDN()), Ingress: ingressA, Authorized: true, Identity: ingressID},
		{Peer: "mesh-a", Service: "inventory", Instance: "tcp", SNI: model.DefaultSNI(tcpPort, a.FQDN()), Ingress: ingressA, Authorized: true, Identity: ingressID},
	}, res.Imports)

	// mesh-a does not dial mesh-b; of its imports, vault's owner refuses
	// this mesh.
	res, code = checkLive(t, bin, a)
	require.Equal(t, 1, code, "%+v", res)
	require.Len(t, res.Peers, 1)
	require.Equal(t, "not dialed from here: it dials this mesh", res.Peers[0].Reason)
	// The backend's refusal is an alert or, when it resets the
	// connection before the ingress passed the alert on, the connection
	// closed in the handshake.
	require.Len(t, res.Imports, 4)
	require.Regexp(t, `^refused this mesh: (remote error: tls: bad certificate|it closed the connection in the handshake: no export has this server name, or this mesh's certificate was refused)$`, res.Imports[3].Reason)
	res.Imports[3].Reason = ""
	ingressB := fmt.Sprintf("%s:%d", b.IP, b.IngressPort)
	ingressID = "spiffe://mesh-b.example/meshfed/gateway/ingress"
	require.Equal(t, []liveImport{
		{Peer: "mesh-b", Service: "payments", Instance: "grpc", SNI: model.DefaultSNI(grpcPort, b.FQDN()), Ingress: ingressB, Authorized: true, Identity: ingressID},
		{Peer: "mesh-b", Service: "payments", Instance: "http", SNI: model.DefaultSNI(httpPort, b.FQDN()), Ingress: ingressB, Authorized: true, Identity: ingressID},
		{Peer: "mesh-b", Service: "payments", Instance: "tcp", SNI: model.DefaultSNI(tcpPort, b.FQDN()), Ingress: ingressB, Authorized: true, Identity: ingressID},
		{Peer: "mesh-b", Service: "vault", Instance: "tcp", SNI: model.DefaultSNI(8200, "vault.mesh-b.example"), Ingress: ingressB},
	}, res.Imports)

	// As a table, one line a peer and an import instance, and a summary
	// that names what failed.
	out, err = exec.Command(bin, "check", "--live", "--config", a.ConfigPath()).Output()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.ExitCode())
	require.Regexp(t, `(?m)^mesh-b  -  .* not dialed from here: it dials this mesh$`, string(out))
	require.Regexp(t, `(?m)^mesh-b/payments  http  +`+regexp.QuoteMeta(ingressB)+`  outbound_.8080_._.payments.mesh-b.example  +authorized$`, string(out))
	require.Regexp(t, `(?m)^mesh-b/vault     tcp  +`+regexp.QuoteMeta(ingressB)+`  outbound_.8200_._.vault.mesh-b.example  +refused this mesh: `, string(out))
	require.Contains(t, string(out), a.ConfigPath()+": 0 errors, 0 warnings; live: failed: import mesh-b/vault/tcp\n")
}

// checkLive runs meshfed check --live on m's configuration and returns
// its JSON and exit status.
func checkLive(t *testing.T, bin string, m *mesh) (liveResult, int) {
	t.Helper()
	cmd := exec.Command(bin, "check", "--live", "--config", m.ConfigPath(), "-o", "json")
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	var res liveResult
	require.NoError(t, json.Unmarshal(out, &res), "%s", out)
	return res, code
}
