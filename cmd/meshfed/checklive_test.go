package main

import (
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshfed/meshfed/internal/workloadtest"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/stretchr/testify/require"
)

// check --live fails (exit status 1) on a peer it cannot reach or whose
// agent it does not trust, with the reason, and passes on a peer that
// dials this mesh and no import.
func TestCheckLiveExitCodesAndJSON(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())

	// An agent of another mesh-a, whose CA this one's peer mesh-b does
	// not share.
	stranger, _ := startAgentAlone(t, "", "admin: {listen: 127.0.0.1:0}\n")
	for _, tc := range []struct {
		name, dial string
		code       int
		reachable  bool
		reason     string
	}{
		{"unreachable", closed, 1, false, "unreachable: dial tcp " + closed + ": connect: connection refused"},
		{"untrusted", stranger.FederationAddr().String(), 1, true, `not trusted here: x509svid: could not get X509 bundle: x509bundle: no X.509 bundle found for trust domain: "mesh-a.example"`},
		{"dials this mesh", "", 0, false, "not dialed from here: it dials this mesh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, dir := startAgentAlone(t, tc.dial, "admin: {listen: 127.0.0.1:0}\n")
			cfg := filepath.Join(dir, "meshfed.yaml")
			out, code := execIn(t, "check", "--live", "--config", cfg, "--agent", "http://"+a.AdminAddr().String(), "-o", "json")
			require.Equal(t, tc.code, code, out)
			var res LiveResult
			require.NoError(t, json.Unmarshal([]byte(out), &res), out)
			require.Len(t, res.Peers, 1)
			p := res.Peers[0]
			require.NotNil(t, p.BundleUpdated)
			p.BundleUpdated = nil
			require.Equal(t, LivePeer{Name: "mesh-b", TrustDomain: "mesh-b.example", Address: tc.dial, Reachable: tc.reachable,
				Bundle: filepath.Join(dir, "b", "bundle.pem"), Reason: tc.reason}, p)
			require.Equal(t, []LiveImport{}, res.Imports)
			require.Empty(t, res.ImportsError)

			out, code = execIn(t, "check", "--live", "--config", cfg, "--agent", "http://"+a.AdminAddr().String())
			require.Equal(t, tc.code, code, out)
			summary := cfg + ": ok; live: ok\n"
			if tc.code == 1 {
				summary = cfg + ": 0 errors, 0 warnings; live: failed: peer mesh-b\n"
			}
			require.Contains(t, out, "\nIMPORT  INSTANCE  INGRESS  SNI  RESULT\n(no imports)\n"+summary)
		})
	}

	// Without the agent, the imports are not listed, which is a failure.
	_, dir := startAgentAlone(t, "", "admin: {listen: 127.0.0.1:0}\n")
	out, code := execIn(t, "check", "--live", "--config", filepath.Join(dir, "meshfed.yaml"), "--agent", "http://"+closed)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "(not listed: cannot reach the meshfed agent at http://"+closed)
}

// With identity.workloadAPI, check --live takes the agent's SVID from the
// Workload API, as the agent does: a peer is then dialed with it, and a
// Workload API that does not answer is the peer's reason.
func TestCheckLiveTakesTheAgentSVIDFromTheWorkloadAPI(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	_, dir := startAgentAlone(t, closed, "admin: {listen: 127.0.0.1:0}\n")
	cfg := filepath.Join(dir, "meshfed.yaml")

	orig, err := os.ReadFile(cfg)
	require.NoError(t, err)
	agentFiles := "  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}\n"
	require.Contains(t, string(orig), agentFiles)
	withAPI := func(addr string) {
		y := strings.Replace(string(orig), agentFiles, "  workloadAPI: "+addr+"\n", 1)
		require.NoError(t, os.WriteFile(cfg, []byte(y), 0o600))
	}
	peerReason := func() string {
		t.Helper()
		out, code := execIn(t, "check", "--live", "--config", cfg, "--agent", "http://"+closed, "-o", "json", "--timeout", "2s")
		require.Equal(t, 1, code, out)
		var res LiveResult
		require.NoError(t, json.Unmarshal([]byte(out), &res), out)
		require.Zero(t, res.Errors, out)
		require.Len(t, res.Peers, 1)
		return res.Peers[0].Reason
	}

	api, addr := workloadtest.Start(t)
	api.Send(agentResponse(t, filepath.Join(dir, "certs")))
	withAPI(addr)
	require.Equal(t, "unreachable: dial tcp "+closed+": connect: connection refused", peerReason())

	gone := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	withAPI(gone)
	require.Contains(t, peerReason(), "identity.workloadAPI "+gone+": ")
}

// agentResponse is the Workload API's answer holding the agent SVID and
// bundle of the dev CA in dir.
func agentResponse(t *testing.T, dir string) *workload.X509SVIDResponse {
	t.Helper()
	der := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		var out []byte
		for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
			out = append(out, b.Bytes...)
		}
		return out
	}
	return &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId: "spiffe://mesh-a.example/meshfed/agent", X509Svid: der("agent.pem"), X509SvidKey: der("agent-key.pem"), Bundle: der("bundle.pem"),
	}}}
}
