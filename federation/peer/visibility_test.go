package peer_test

import (
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/federation/session"
)

// refusal waits for the refusal of the given identity among rs and returns
// it without its time and remote port.
func eventuallyRefused(t *testing.T, list func() []peer.Refusal, identity string) peer.Refusal {
	t.Helper()
	var got peer.Refusal
	require.Eventually(t, func() bool {
		for _, r := range list() {
			if r.Identity == identity {
				got = r
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "no refusal of %q", identity)
	host, _, err := net.SplitHostPort(got.Remote)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	assert.False(t, got.At.IsZero())
	got.At, got.Remote = time.Time{}, ""
	return got
}

// Both ends say why: the accepting side records the refused handshake
// under the peer whose trust domain the client presented, with the
// reason; the dialer's error says what the TLS alert means.
func TestRefusedHandshakeIsRecordedAndExplained(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	s := spec("mesh-a", p.td("mesh-a"), "")
	s.SPIFFEIDs = []string{"spiffe://mesh-a.example/some/other/agent"}
	b := newAgent(t, "mesh-b", p, []peer.Spec{s}, nil)
	a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), b.addr)}, nil)

	got := eventuallyRefused(t, func() []peer.Refusal { return b.status("mesh-a").Refused }, "spiffe://mesh-a.example/meshfed/agent")
	assert.Equal(t, peer.Refusal{
		Identity: "spiffe://mesh-a.example/meshfed/agent",
		Reason:   `spiffe://mesh-a.example/meshfed/agent is not an agent identity of peer "mesh-a" (spiffeIds: spiffe://mesh-a.example/some/other/agent)`,
	}, got)
	assert.GreaterOrEqual(t, b.gauge("meshfed_hamlet_refused_connections_total", map[string]string{"peer": "mesh-a"}), 1.0)
	assert.Empty(t, b.manager.Refused())

	require.Eventually(t, func() bool { return a.status("mesh-b").Reconnects >= 1 }, 10*time.Second, 10*time.Millisecond)
	st := a.status("mesh-b")
	// TLS 1.3 lets the server refuse after the client's side of the
	// handshake is done: the dialer sees the alert or a cut connection.
	assert.Regexp(t, `^rpc error: code = Unavailable desc = peer "mesh-b" (refused this agent's certificate|ended the connection right after the TLS handshake, before the stream opened: most likely it refused this agent's certificate) `+
		`spiffe://mesh-a\.example/meshfed/agent .*its meshfed status lists the refused connection with the reason`, st.LastError)
	require.NotNil(t, st.LastErrorAt)
}

// Clients of no configured peer's trust domain, or with no SPIFFE
// identity at all, are recorded apart, each with its reason.
func TestRefusedHandshakesOfNoKnownPeer(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b", "evil")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)

	_, err := openStream(t, b.addr, credentials.NewTLS(p.tls(t, "evil").ClientConfig(tlsconfig.AuthorizeAny())))
	require.Error(t, err)
	got := eventuallyRefused(t, b.manager.Refused, "spiffe://evil.example/meshfed/agent")
	assert.Equal(t, `x509svid: could not get X509 bundle: x509bundle: no X.509 bundle for trust domain "evil.example"`, got.Reason)

	_, err = openStream(t, b.addr, insecure.NewCredentials())
	require.Error(t, err)
	got = eventuallyRefused(t, b.manager.Refused, "")
	assert.Equal(t, "not TLS (a plaintext client?): tls: first record does not look like a TLS handshake", got.Reason)
	assert.Empty(t, b.status("mesh-a").Refused)
}

// An expired certificate of the peer's own trust domain is recorded under
// that peer.
func TestRefusedExpiredCertificate(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
	ca := p.cas["mesh-a"]
	notAfter := time.Now().Add(-time.Hour).Truncate(time.Second)
	chain, key, err := ca.Issue(spiffeid.RequireFromPath(ca.TrustDomain(), "/meshfed/agent"), 0, certs.WithValidity(notAfter.Add(-time.Hour), notAfter))
	require.NoError(t, err)
	svid, err := x509svid.Parse(chain, key)
	require.NoError(t, err)
	expired := p.tls(t, "mesh-a")
	expired.SVID = svid
	_, err = openStream(t, b.addr, credentials.NewTLS(expired.ClientConfig(tlsconfig.AuthorizeAny())))
	require.Error(t, err)
	got := eventuallyRefused(t, func() []peer.Refusal { return b.status("mesh-a").Refused }, "spiffe://mesh-a.example/meshfed/agent")
	assert.Equal(t, "certs: peer certificate expired at "+notAfter.UTC().Format(time.RFC3339), got.Reason)
}

// The last error has its time and is cleared once a stream is up again;
// a connected peer shows what was negotiated and when frames last went.
func TestStatusLastErrorClearsOnRecovery(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), addr)}, nil)
	require.Eventually(t, func() bool { return a.status("mesh-b").LastError != "" }, 10*time.Second, 10*time.Millisecond)
	require.NotNil(t, a.status("mesh-b").LastErrorAt)
	assert.Nil(t, a.status("mesh-b").Capabilities)

	var b *agent
	require.Eventually(t, func() bool {
		lis, err = net.Listen("tcp", addr)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	b = newAgentOn(t, lis, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
	b.export([]string{"payments"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments")
	st := a.status("mesh-b")
	assert.Equal(t, peer.Connected, st.State)
	assert.Empty(t, st.LastError)
	assert.Nil(t, st.LastErrorAt)
	assert.Equal(t, &session.Capabilities{SyncComplete: true, Window: 1, ServicesPerResponse: config.DefaultMaxBatch}, st.Capabilities)
	require.NotNil(t, st.LastReceived)
	// The ACK of payments goes out after the import is taken.
	require.Eventually(t, func() bool { return a.status("mesh-b").LastSent != nil }, 10*time.Second, time.Millisecond)
}
