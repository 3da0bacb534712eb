package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/envoyrun/envoytest"
	"github.com/meshfed/meshfed/examples/twomesh"
	"github.com/meshfed/meshfed/federation/peer"
)

// Two agents that know nothing of each other, no peer and no bundle of
// the other, federate after meshfed peer invite on mesh-a and meshfed peer
// join on mesh-b, and still after both restart; a token expired, used
// already or altered is refused, each with its own reason.
func TestPeeringByInvitation(t *testing.T) { testPeering(t, false) }

// With bundle endpoints (https_spiffe), each side follows the other's
// endpoint, bootstrapped with the bundle the join exchanged.
func TestPeeringByInvitationWithBundleEndpoints(t *testing.T) { testPeering(t, true) }

func testPeering(t *testing.T, bundleEndpoints bool) {
	bin := envoytest.Binary(t)
	root := t.TempDir()
	for _, name := range []string{"mesh-a", "mesh-b"} {
		require.NoError(t, twomesh.WriteCA(root, name))
	}
	ipA, ipB := loopbackPair()
	a := newMesh(t, root, "mesh-a", "inventory", ipA, options{})
	b := newMesh(t, root, "mesh-b", "payments", ipB, options{})
	a.peer, b.peer = b, a
	a.Peer, b.Peer = b.Mesh, a.Mesh
	free := &freePorts{t: t, ip: ipA}
	joinAddr := free.addr()
	if bundleEndpoints {
		a.BundleEndpoint = "{listen: " + free.addr() + "}"
		b.BundleEndpoint = "{listen: " + free.addr() + "}"
	}
	free.release()
	for _, m := range []*mesh{a, b} {
		m.PeerRemoved = true
		m.writeServices(true)
		require.NoError(t, m.WriteConfig())
		withoutPeerBundle(t, m)
	}
	addToFederation(t, a, "  join: {listen: "+joinAddr+"}\n")
	a.startAgent()
	b.startAgent()
	a.startGateways(bin)
	b.startGateways(bin)
	t.Cleanup(func() {
		for _, m := range []*mesh{a, b} {
			m.checkGateways()
		}
	})
	require.Empty(t, a.agent.Peers.Status())
	require.Empty(t, b.agent.Peers.Status())

	cfgA, svidA := peerConfig(t, a)
	token, inv, err := peer.Invite(peer.InviteOptions{Config: cfgA, Name: "mesh-b", SVID: svidA})
	require.NoError(t, err)
	require.Equal(t, joinAddr, inv.Join)
	require.NotContains(t, token, "PRIVATE KEY")
	records, err := os.ReadFile(filepath.Join(cfgA.Federation.PeersDir, peer.InvitationsDir, inv.ID+".json"))
	require.NoError(t, err)
	require.NotContains(t, string(records), inv.Secret, "the inviter keeps the secret hashed")

	cfgB, svidB := peerConfig(t, b)
	start := time.Now()
	joined, err := peer.Join(context.Background(), peer.JoinOptions{Config: cfgB, Token: token, SVID: svidB})
	require.NoError(t, err)
	require.Equal(t, peer.Joined{Name: "mesh-a", TrustDomain: "mesh-a.example", As: "mesh-b", Dial: a.Federation,
		File: filepath.Join(b.Dir, "peers.d", "mesh-a.yaml")}, joined)
	written, err := os.ReadFile(joined.File)
	require.NoError(t, err)
	if bundleEndpoints {
		require.Contains(t, string(written), fmt.Sprintf("trustBundle:\n  endpoint:\n    url: https://%s/\n    profile: https_spiffe\n"+
			"    spiffeId: spiffe://mesh-a.example/meshfed/agent\n    bootstrapBundle: mesh-a.bundle.pem\n", strings.TrimSuffix(strings.TrimPrefix(a.BundleEndpoint, "{listen: "), "}")))
	} else {
		require.Contains(t, string(written), "trustBundle:\n  file: mesh-a.bundle.pem\n")
	}
	// As meshfed peer join does: the running agent reloads.
	var res agent.ReloadResult
	require.NoError(t, (&admin.Client{BaseURL: "http://" + b.Admin}).Post(context.Background(), "/api/v1/reload", &res))
	require.Equal(t, agent.ReloadResult{Applied: []string{"trustBundles.mesh-a.example", "peers[mesh-a]"}, NeedsRestart: []string{}}, res)
	waitBothImport(t, a, b)
	t.Logf("imports both ways %v after the join began", time.Since(start).Round(time.Millisecond))
	for _, m := range []*mesh{a, b} {
		m.waitImported()
		checkHTTP(t, m)
	}

	// The refusals, as the inviter gives them to a mesh that dials it.
	self, err := peer.SelfInfo(cfgB, svidB.ID, mustRead(t, filepath.Join(b.CertsDir(), "bundle.pem")))
	require.NoError(t, err)
	client := peer.JoinClient{SVID: svidB}
	_, err = client.Join(context.Background(), token, inv, self)
	require.ErrorContains(t, err, "mesh-a.example refused the join: the invitation "+inv.ID+" for mesh-b was used already, at ")
	require.Equal(t, peer.ReasonUsed, peer.IsTokenError(err))

	old, oldInv, err := peer.Invite(peer.InviteOptions{Config: cfgA, Name: "mesh-c", SVID: svidA, TTL: time.Hour, Now: time.Now().Add(-2 * time.Hour)})
	require.NoError(t, err)
	_, err = client.Join(context.Background(), old, oldInv, self)
	require.ErrorContains(t, err, fmt.Sprintf("mesh-a.example refused the join: the invitation %s for mesh-c expired at %s; ask for a new one (meshfed peer invite)",
		oldInv.ID, oldInv.ExpiresAt.Format(time.RFC3339)))
	require.Equal(t, peer.ReasonExpired, peer.IsTokenError(err))

	fresh, freshInv, err := peer.Invite(peer.InviteOptions{Config: cfgA, Name: "mesh-c", SVID: svidA})
	require.NoError(t, err)
	altered := alterPayload(t, fresh, `"name":"mesh-c"`, `"name":"mesh-x"`)
	_, err = peer.ReadInvitation(altered)
	require.ErrorContains(t, err, "the token was altered after spiffe://mesh-a.example/meshfed/agent signed it: its signature does not verify")
	require.Equal(t, peer.ReasonAltered, peer.IsTokenError(err))
	_, err = client.Join(context.Background(), altered, freshInv, self)
	require.ErrorContains(t, err, "mesh-a.example refused the join: the token was altered after spiffe://mesh-a.example/meshfed/agent signed it: its signature does not verify")
	require.Equal(t, peer.ReasonAltered, peer.IsTokenError(err))

	// Both restarted, they federate on what the join wrote.
	a.restartAgent()
	b.restartAgent()
	eventually(t, "both peers connected after the restart", func(context.Context) error {
		for _, m := range []*mesh{a, b} {
			if st := peerStatus(t, m, m.peer.Name); st.State != peer.Connected {
				return fmt.Errorf("%s's peer %s is %s", m.Name, m.peer.Name, st.State)
			}
		}
		return nil
	})
	for _, m := range []*mesh{a, b} {
		m.waitImported()
		checkHTTP(t, m)
	}
}

// withoutPeerBundle takes the peer's trust bundle out of m's
// configuration: the join brings it.
func withoutPeerBundle(t *testing.T, m *mesh) {
	t.Helper()
	line := fmt.Sprintf("  %s: {file: ../%s/certs/bundle.pem}\n", m.Peer.TrustDomain(), m.Peer.Name)
	b, err := os.ReadFile(m.ConfigPath())
	require.NoError(t, err)
	require.Contains(t, string(b), line)
	require.NoError(t, os.WriteFile(m.ConfigPath(), []byte(strings.Replace(string(b), line, "", 1)), 0o600))
}

// addToFederation adds lines to m's federation block.
func addToFederation(t *testing.T, m *mesh, lines string) {
	t.Helper()
	b, err := os.ReadFile(m.ConfigPath())
	require.NoError(t, err)
	require.Contains(t, string(b), "\nfederation:\n")
	require.NoError(t, os.WriteFile(m.ConfigPath(), []byte(strings.Replace(string(b), "\nfederation:\n", "\nfederation:\n"+lines, 1)), 0o600))
}

// peerConfig is m's configuration and its agent's SVID, as meshfed peer
// reads them.
func peerConfig(t *testing.T, m *mesh) (*config.Config, *x509svid.SVID) {
	t.Helper()
	cfg, err := config.Load(m.ConfigPath())
	require.NoError(t, err)
	svid, err := peer.LoadAgentSVID(context.Background(), cfg)
	require.NoError(t, err)
	return cfg, svid
}

func waitBothImport(t *testing.T, a, b *mesh) {
	t.Helper()
	eventually(t, "imports both ways", func(context.Context) error {
		if len(a.agent.Catalog.Imports()) == 0 || len(b.agent.Catalog.Imports()) == 0 {
			return fmt.Errorf("mesh-a imports %d, mesh-b %d", len(a.agent.Catalog.Imports()), len(b.agent.Catalog.Imports()))
		}
		return nil
	})
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// alterPayload changes the JSON payload of a compact JWS, keeping its
// signature.
func alterPayload(t *testing.T, token, from, to string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	payload, err := base64URL.DecodeString(parts[1])
	require.NoError(t, err)
	require.Contains(t, string(payload), from)
	parts[1] = base64URL.EncodeToString([]byte(strings.Replace(string(payload), from, to, 1)))
	return strings.Join(parts, ".")
}

var base64URL = base64.RawURLEncoding
