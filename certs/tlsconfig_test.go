package certs

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// peerFixture is a server in a.example and a client CA in b.example, each
// side trusting both bundles, never merged.
type peerFixture struct {
	caA, caB *CA
	bundles  *BundleSet
	server   *x509svid.SVID
	client   *x509svid.SVID
}

func newPeerFixture(t *testing.T) *peerFixture {
	t.Helper()
	f := &peerFixture{caA: newCA(t, tdA), caB: newCA(t, tdB)}
	f.bundles = NewBundleSet(zaptest.NewLogger(t), nil)
	t.Cleanup(func() { _ = f.bundles.Close() })
	require.NoError(t, f.bundles.Set(f.caA.Bundle()))
	require.NoError(t, f.bundles.Set(f.caB.Bundle()))
	var err error
	f.server, err = f.caA.IssueX509SVID(mustID(t, tdA, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	f.client, err = f.caB.IssueX509SVID(mustID(t, tdB, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	return f
}

func leafTemplate(uris ...*url.URL) *x509.Certificate {
	return &x509.Certificate{
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  uris,
	}
}

func svidFromTemplate(t *testing.T, ca *CA, tmpl *x509.Certificate) *x509svid.SVID {
	t.Helper()
	chain, key, err := ca.IssueTemplate(tmpl)
	require.NoError(t, err)
	// ParseRaw skips SVID validation, so malformed SVIDs can be presented.
	certs, err := parsePEMCerts(chain)
	require.NoError(t, err)
	k, err := parseECKey(key)
	require.NoError(t, err)
	return &x509svid.SVID{ID: mustID(t, ca.TrustDomain(), "/x"), Certificates: certs, PrivateKey: k}
}

func TestMTLSHandshakeAcceptsGoodPeers(t *testing.T) {
	f := newPeerFixture(t)
	srv := startEchoServer(t, ServerTLSConfig(f.server, f.bundles, tlsconfig.AuthorizeMemberOf(tdB)))
	conn, err := dial(t, srv.addr, ClientTLSConfig(f.client, f.bundles, tlsconfig.AuthorizeID(f.server.ID)))
	require.NoError(t, err)
	require.NoError(t, srv.serverErr(t))
	echo(t, conn, "hello")
	st := conn.ConnectionState()
	require.GreaterOrEqual(t, st.Version, uint16(tls.VersionTLS12))
	id, err := x509svid.IDFromCert(st.PeerCertificates[0])
	require.NoError(t, err)
	require.Equal(t, f.server.ID, id)
}

func TestServerRejectsBadClientCertificates(t *testing.T) {
	f := newPeerFixture(t)
	idB := mustID(t, tdB, "/meshfed/agent")
	evilCA := newCA(t, tdEvil)

	expired := leafTemplate(idB.URL())
	expired.NotBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	expired.NotAfter = time.Date(2020, 2, 1, 0, 0, 0, 0, time.UTC)

	notYet := leafTemplate(idB.URL())
	notYet.NotBefore = time.Now().Add(24 * time.Hour)
	notYet.NotAfter = time.Now().Add(48 * time.Hour)

	caLeaf := leafTemplate(idB.URL())
	caLeaf.IsCA = true
	caLeaf.KeyUsage |= x509.KeyUsageCertSign

	serverOnly := leafTemplate(idB.URL())
	serverOnly.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

	for _, tc := range []struct {
		name   string
		client *x509svid.SVID
		want   string
	}{
		{"two URI SANs", svidFromTemplate(t, f.caB, leafTemplate(idB.URL(), mustID(t, tdB, "/other").URL())),
			"certs: peer certificate has 2 URI SANs, want exactly 1"},
		{"no URI SAN", svidFromTemplate(t, f.caB, leafTemplate()),
			"certs: peer certificate has 0 URI SANs, want exactly 1"},
		{"CA as leaf", svidFromTemplate(t, f.caB, caLeaf),
			"certs: peer certificate is a CA certificate, want a leaf"},
		{"expired", svidFromTemplate(t, f.caB, expired),
			"certs: peer certificate expired at 2020-02-01T00:00:00Z"},
		{"not yet valid", svidFromTemplate(t, f.caB, notYet),
			"certs: peer certificate is not valid before " + notYet.NotBefore.UTC().Format(time.RFC3339)},
		{"without clientAuth", svidFromTemplate(t, f.caB, serverOnly),
			"certs: peer certificate lacks extended key usage clientAuth"},
		{"trust domain without bundle", svidFromTemplate(t, evilCA, leafTemplate(mustID(t, tdEvil, "/meshfed/agent").URL())),
			`x509svid: could not get X509 bundle: certs: no trust bundle for trust domain "evil.example"`},
		{"signed by another trust domain's CA", svidFromTemplate(t, f.caA, leafTemplate(idB.URL())),
			"x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startEchoServer(t, ServerTLSConfig(f.server, f.bundles, tlsconfig.AuthorizeAny()))
			// In TLS 1.3 the client may finish before the server rejects it,
			// so the server's handshake result is the one that counts.
			_, _ = dial(t, srv.addr, ClientTLSConfig(tc.client, f.bundles, tlsconfig.AuthorizeAny()))
			require.ErrorContains(t, srv.serverErr(t), tc.want)
		})
	}
}

func TestClientRejectsServerWithoutServerAuth(t *testing.T) {
	f := newPeerFixture(t)
	tmpl := leafTemplate(f.server.ID.URL())
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	srv := startEchoServer(t, ServerTLSConfig(svidFromTemplate(t, f.caA, tmpl), f.bundles, tlsconfig.AuthorizeAny()))
	_, err := dial(t, srv.addr, ClientTLSConfig(f.client, f.bundles, tlsconfig.AuthorizeAny()))
	require.ErrorContains(t, err, "certs: peer certificate lacks extended key usage serverAuth")
}

func TestAuthorizerAndMissingAuthorizer(t *testing.T) {
	f := newPeerFixture(t)
	srv := startEchoServer(t, ServerTLSConfig(f.server, f.bundles, tlsconfig.AuthorizeAny()))
	_, err := dial(t, srv.addr, ClientTLSConfig(f.client, f.bundles, tlsconfig.AuthorizeMemberOf(tdB)))
	require.ErrorContains(t, err, `unexpected trust domain "a.example"`)

	srv = startEchoServer(t, ServerTLSConfig(f.server, f.bundles, nil))
	_, _ = dial(t, srv.addr, ClientTLSConfig(f.client, f.bundles, tlsconfig.AuthorizeAny()))
	require.ErrorContains(t, srv.serverErr(t), "certs: no peer authorizer configured")
}

func TestCheckPeerLeafAllowsCertificateWithoutEKU(t *testing.T) {
	leaf := &x509.Certificate{
		URIs:      []*url.URL{spiffeid.RequireFromString("spiffe://a.example/x").URL()},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(100, 0), SerialNumber: big.NewInt(1),
	}
	require.NoError(t, CheckPeerLeaf(leaf, x509.ExtKeyUsageClientAuth, time.Unix(50, 0)))
	leaf.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	require.NoError(t, CheckPeerLeaf(leaf, x509.ExtKeyUsageServerAuth, time.Unix(50, 0)))
}

func TestTLSConfigsRequireTLS12AndClientCerts(t *testing.T) {
	f := newPeerFixture(t)
	s := ServerTLSConfig(f.server, f.bundles, tlsconfig.AuthorizeAny())
	c := ClientTLSConfig(f.client, f.bundles, tlsconfig.AuthorizeAny())
	require.Equal(t, uint16(tls.VersionTLS12), s.MinVersion)
	require.Equal(t, uint16(tls.VersionTLS12), c.MinVersion)
	require.Equal(t, tls.RequireAnyClientCert, s.ClientAuth)
	require.True(t, s.SessionTicketsDisabled)
	require.Nil(t, c.ClientSessionCache)
}
