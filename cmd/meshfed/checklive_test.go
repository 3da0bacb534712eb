package main

import (
	"encoding/json"
	"net"
	"path/filepath"
	"testing"

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
