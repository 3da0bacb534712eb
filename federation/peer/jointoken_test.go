package peer

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
)

// tokenMesh is one mesh of a token test: its CA, its agent's SVID and
// its description.
type tokenMesh struct {
	ca   *certs.CA
	svid *x509svid.SVID
	info MeshInfo
}

func newTokenMesh(t *testing.T, name string) tokenMesh {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(name + ".example")
	ca, err := certs.NewTestCA(td)
	require.NoError(t, err)
	svid, err := ca.IssueX509SVID(spiffeid.RequireFromPath(td, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	return tokenMesh{ca: ca, svid: svid, info: MeshInfo{
		Name: name, TrustDomain: td.Name(), Bundle: string(ca.CertPEM()),
		AgentIDs:   []string{svid.ID.String()},
		Callers:    []string{"spiffe://" + td.Name() + "/meshfed/gateway/egress"},
		Federation: []string{"127.0.0.1:15443"},
	}}
}

// issue is what Invite does once it has read the configuration.
func issue(t *testing.T, dir string, m tokenMesh, join string, now time.Time, ttl time.Duration) (string, Invitation) {
	t.Helper()
	inv := Invitation{Name: "mesh-b", Mesh: m.info, Join: join}
	require.NoError(t, newInvitation(&inv, now, ttl))
	token, err := SignInvitation(inv, m.svid)
	require.NoError(t, err)
	require.NoError(t, InvitationsOf(dir).keep(inv))
	return token, inv
}

// reason is the reason of a *TokenError, failing the test for another
// error.
func reason(t *testing.T, err error) string {
	t.Helper()
	var te *TokenError
	require.True(t, errors.As(err, &te), "%v is not a *TokenError", err)
	return te.Reason
}

// changePayload rewrites the payload of a compact JWS and keeps its
// signature.
func changePayload(t *testing.T, token string, change func(string) string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(change(string(b))))
	return strings.Join(parts, ".")
}

// A token reads back as issued, and holds no key.
func TestTokenReadsBackAndHoldsNoKey(t *testing.T) {
	a := newTokenMesh(t, "mesh-a")
	dir := t.TempDir()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	token, inv := issue(t, dir, a, "127.0.0.1:15445", now, time.Hour)
	got, err := ReadInvitation(token)
	require.NoError(t, err)
	require.Equal(t, inv.ID, got.ID)
	require.Equal(t, inv.Secret, got.Secret)
	require.Equal(t, a.info, got.Mesh)
	require.Equal(t, now.Add(time.Hour), got.ExpiresAt)
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	require.NoError(t, err)
	require.NotContains(t, string(payload), "PRIVATE KEY")
	rec, err := os.ReadFile(filepath.Join(dir, InvitationsDir, inv.ID+".json"))
	require.NoError(t, err)
	require.NotContains(t, string(rec), inv.Secret, "the inviter keeps the secret hashed")
	require.Contains(t, string(rec), secretHash(inv.Secret))
}

// A token changed anywhere is refused as altered before anything it
// names is trusted, and one of another trust domain by the inviter.
func TestTokenAltered(t *testing.T) {
	a := newTokenMesh(t, "mesh-a")
	evil := newTokenMesh(t, "evil")
	token, _ := issue(t, t.TempDir(), a, "127.0.0.1:15445", time.Now(), time.Hour)

	renamed := changePayload(t, token, func(s string) string { return strings.Replace(s, `"name":"mesh-b"`, `"name":"mesh-x"`, 1) })
	_, err := ReadInvitation(renamed)
	require.EqualError(t, err, "the token was altered after spiffe://mesh-a.example/meshfed/agent signed it: its signature does not verify")
	require.Equal(t, ReasonAltered, reason(t, err))

	// The join address of an attacker: the signature covers it.
	moved := changePayload(t, token, func(s string) string {
		return strings.Replace(s, `"join":"127.0.0.1:15445"`, `"join":"192.0.2.1:15445"`, 1)
	})
	_, err = ReadInvitation(moved)
	require.Equal(t, ReasonAltered, reason(t, err))

	// Another bundle: the signer's chain no longer verifies.
	rebundled := changePayload(t, token, func(s string) string {
		return strings.Replace(s, jsonString(a.info.Bundle), jsonString(evil.info.Bundle), 1)
	})
	_, err = ReadInvitation(rebundled)
	require.ErrorContains(t, err, "the token was altered: the certificate that signed it does not verify against the bundle it carries: ")
	require.Equal(t, ReasonAltered, reason(t, err))

	parts := strings.Split(token, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	require.NoError(t, err)
	sig[5] ^= 1
	_, err = ReadInvitation(parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig))
	require.Equal(t, ReasonAltered, reason(t, err))

	_, err = ReadInvitation(token[:len(token)/2])
	require.Equal(t, ReasonMalformed, reason(t, err))

	// A token evil signed for itself is whole, but not the inviter's.
	evilToken, _ := issue(t, t.TempDir(), evil, "127.0.0.1:15445", time.Now(), time.Hour)
	_, err = VerifyIssuer(evilToken, a.ca.X509Bundle())
	require.ErrorContains(t, err, "the token was not issued by this agent's trust domain: ")
	require.Equal(t, ReasonAltered, reason(t, err))
}

// jsonString is s as JSON writes it in the payload.
func jsonString(s string) string { return strings.ReplaceAll(s, "\n", `\n`) }

// An invitation is claimed once, with its secret, before it expires; each
// refusal has its reason.
func TestInvitationClaim(t *testing.T) {
	a := newTokenMesh(t, "mesh-a")
	dir := t.TempDir()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	store := InvitationsOf(dir)
	_, inv := issue(t, dir, a, "127.0.0.1:15445", now, time.Hour)

	wrong := inv
	wrong.Secret = strings.Repeat("A", len(inv.Secret))
	_, err := store.Claim(wrong, now)
	require.EqualError(t, err, "the token's secret is not that of invitation "+inv.ID+": the token is not the one issued")
	require.Equal(t, ReasonSecret, reason(t, err))

	_, err = store.Claim(inv, now.Add(time.Hour))
	require.EqualError(t, err, "the invitation "+inv.ID+" for mesh-b expired at 2026-12-06T13:00:00Z; ask for a new one (meshfed peer invite)")
	require.Equal(t, ReasonExpired, reason(t, err))

	unknown := inv
	unknown.ID = strings.Repeat("0", 24)
	_, err = store.Claim(unknown, now)
	require.EqualError(t, err, "this agent has no invitation "+unknown.ID+": it was not issued here, or removed")
	require.Equal(t, ReasonUnknown, reason(t, err))

	// A join that fails frees the invitation; one that succeeds uses it.
	done, err := store.Claim(inv, now)
	require.NoError(t, err)
	_, err = store.Claim(inv, now)
	require.Equal(t, ReasonUsed, reason(t, err), "claimed by a join under way")
	done(false)
	done, err = store.Claim(inv, now)
	require.NoError(t, err)
	done(true)
	_, err = store.Claim(inv, now)
	require.ErrorContains(t, err, "the invitation "+inv.ID+" for mesh-b was used already, at ")
	require.Equal(t, ReasonUsed, reason(t, err))
	pending, err := store.Pending(now)
	require.NoError(t, err)
	require.Empty(t, pending)
}

// The join endpoint over real TLS: the client verifies it against the
// token's bundle, the server proves nothing before the secret, refusals
// reach the client with their reason, and a source that keeps trying is
// slowed down.
func TestJoinEndpoint(t *testing.T) {
	a := newTokenMesh(t, "mesh-a")
	b := newTokenMesh(t, "mesh-b")
	evil := newTokenMesh(t, "evil")
	dir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	serve := func(svid *x509svid.SVID) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv, err := NewJoinServer(JoinServerConfig{SVID: svid, Own: a.ca.X509Bundle(), Now: clock,
			Accept: func(_ context.Context, inv Invitation, joiner MeshInfo, id spiffeid.ID, _ netip.AddrPort) (JoinAnswer, error) {
				done, err := InvitationsOf(dir).Claim(inv, clock())
				if err != nil {
					return JoinAnswer{}, err
				}
				done(true)
				require.Equal(t, b.info, joiner)
				require.Equal(t, b.svid.ID, id)
				return JoinAnswer{Name: inv.Name, Mesh: a.info}, nil
			}})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, ln) }()
		t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
		return ln.Addr().String()
	}
	addr := serve(a.svid)
	token, inv := issue(t, dir, a, addr, now, time.Hour)
	client := JoinClient{SVID: b.svid}

	ans, err := client.Join(context.Background(), token, inv, b.info)
	require.NoError(t, err)
	require.Equal(t, JoinAnswer{Name: "mesh-b", Mesh: a.info}, ans)

	_, err = client.Join(context.Background(), token, inv, b.info)
	require.ErrorContains(t, err, "mesh-a.example refused the join: the invitation "+inv.ID+" for mesh-b was used already")
	require.Equal(t, ReasonUsed, reason(t, err))

	// A server at the token's address that is not the inviter's agent
	// is never sent the token.
	evilAddr := serve(evil.svid)
	token2, inv2 := issue(t, dir, a, evilAddr, now, time.Hour)
	_, err = client.Join(context.Background(), token2, inv2, b.info)
	require.ErrorContains(t, err, "the join endpoint of mesh-a.example at "+evilAddr+" cannot be reached: ")
	require.ErrorContains(t, err, `no X.509 bundle found for trust domain: "evil.example"`)
	require.Empty(t, reason0(err))

	// A client that does not hold the key of the agent it describes.
	liar := b.info
	liar.AgentIDs = []string{"spiffe://mesh-b.example/meshfed/other"}
	token3, inv3 := issue(t, dir, a, addr, now, time.Hour)
	_, err = client.Join(context.Background(), token3, inv3, liar)
	require.ErrorContains(t, err, "mesh-a.example refused the join: the client certificate is spiffe://mesh-b.example/meshfed/agent, none of mesh.agentIds")
	require.Equal(t, ReasonInvalid, reason(t, err))

	// Five tries from a source within its interval, then it waits:
	// the clock does not move.
	var last error
	for range 6 {
		_, last = client.Join(context.Background(), token, inv, b.info)
	}
	require.ErrorContains(t, last, "mesh-a.example refused the join: too many joins; try again in a few seconds")
	require.Equal(t, ReasonRateLimited, reason(t, last))
}

func reason0(err error) string {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	return ""
}
