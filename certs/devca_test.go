package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	certs, err := parsePEMCerts(data)
	require.NoError(t, err)
	require.Len(t, certs, 1)
	return certs[0]
}

func requireMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, want, st.Mode().Perm(), path)
}

func requireLeaf(t *testing.T, c *x509.Certificate, id string) {
	t.Helper()
	require.False(t, c.IsCA)
	require.True(t, c.BasicConstraintsValid)
	require.Len(t, c.URIs, 1)
	require.Equal(t, id, c.URIs[0].String())
	require.Equal(t, x509.KeyUsageDigitalSignature, c.KeyUsage)
	require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, c.ExtKeyUsage)
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	require.True(t, ok)
	require.Equal(t, elliptic.P256(), pub.Curve)
}

func TestInitDevCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	require.NoError(t, InitDevCA(DevCAOptions{Dir: dir, TrustDomain: tdA}))

	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	require.True(t, ca.IsCA)
	require.Equal(t, x509.KeyUsageCertSign, ca.KeyUsage&x509.KeyUsageCertSign)
	require.Len(t, ca.URIs, 1)
	require.Equal(t, "spiffe://a.example", ca.URIs[0].String())
	require.WithinDuration(t, ca.NotBefore.Add(DefaultCATTL), ca.NotAfter, 2*time.Minute)
	requireMode(t, filepath.Join(dir, "ca.pem"), 0o644)
	requireMode(t, filepath.Join(dir, "ca-key.pem"), 0o600)
	requireMode(t, filepath.Join(dir, "bundle.pem"), 0o644)

	bundle, err := x509bundle.Load(tdA, filepath.Join(dir, "bundle.pem"))
	require.NoError(t, err)
	for name, id := range map[string]string{
		"agent":   "spiffe://a.example/meshfed/agent",
		"egress":  "spiffe://a.example/meshfed/gateway/egress",
		"ingress": "spiffe://a.example/meshfed/gateway/ingress",
	} {
		certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		leaf := readCert(t, certPath)
		requireLeaf(t, leaf, id)
		require.WithinDuration(t, leaf.NotBefore.Add(DefaultLeafTTL), leaf.NotAfter, 2*time.Minute)
		requireMode(t, certPath, 0o644)
		requireMode(t, keyPath, 0o600)

		svid, err := x509svid.Load(certPath, keyPath)
		require.NoError(t, err)
		gotID, _, err := x509svid.Verify(svid.Certificates, bundle)
		require.NoError(t, err)
		require.Equal(t, id, gotID.String())
	}

	err = InitDevCA(DevCAOptions{Dir: dir, TrustDomain: tdA})
	require.ErrorContains(t, err, "ca.pem already exists; refusing to replace a CA without Overwrite")
	require.NoError(t, InitDevCA(DevCAOptions{Dir: dir, TrustDomain: tdA, Overwrite: true, LeafTTL: time.Hour}))
	leaf := readCert(t, filepath.Join(dir, "agent.pem"))
	require.WithinDuration(t, leaf.NotBefore.Add(time.Hour), leaf.NotAfter, 2*time.Minute)
}

func TestIssueSVIDFromCAFolder(t *testing.T) {
	caDir, out := t.TempDir(), t.TempDir()
	require.NoError(t, InitDevCA(DevCAOptions{Dir: caDir, TrustDomain: tdA}))
	id := mustID(t, tdA, "/ns/payments")
	require.NoError(t, IssueSVID(caDir, id, out, "payments"))
	requireLeaf(t, readCert(t, filepath.Join(out, "payments.pem")), "spiffe://a.example/ns/payments")
	requireMode(t, filepath.Join(out, "payments-key.pem"), 0o600)

	err := IssueSVID(caDir, mustID(t, tdB, "/x"), out, "x")
	require.ErrorContains(t, err, `certs: SPIFFE ID "spiffe://b.example/x" is not in the CA's trust domain "a.example"`)
	err = IssueSVID(caDir, id, out, "../escape")
	require.ErrorContains(t, err, `certs: SVID name "../escape" must be a plain file name other than ca and bundle`)
	err = IssueSVID(t.TempDir(), id, out, "x")
	require.ErrorContains(t, err, "ca.pem: no such file or directory")
}

func TestTestCAFixedFields(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(24 * time.Hour)
	ca, err := NewTestCA(tdB, WithValidity(nb, na.Add(time.Hour)), WithSerial(7))
	require.NoError(t, err)
	require.Equal(t, int64(7), ca.Certificate().SerialNumber.Int64())

	chain, key, err := ca.Issue(mustID(t, tdB, "/w"), 0, WithValidity(nb, na), WithSerial(42))
	require.NoError(t, err)
	leaf := parseLeaf(t, chain)
	require.Equal(t, int64(42), leaf.SerialNumber.Int64())
	require.True(t, nb.Equal(leaf.NotBefore))
	require.True(t, na.Equal(leaf.NotAfter))
	_, err = x509svid.Parse(chain, key)
	require.NoError(t, err)

	_, _, err = ca.Issue(mustID(t, tdB, "/w"), 0, WithValidity(na, nb))
	require.ErrorContains(t, err, "certs: NotAfter 2026-01-01T00:00:00Z is not after NotBefore 2026-01-02T00:00:00Z")
	_, err = NewTestCA(spiffeid.TrustDomain{})
	require.ErrorContains(t, err, "certs: CA needs a trust domain")
}

func TestRoleID(t *testing.T) {
	id, err := RoleID(tdA, model.Ingress)
	require.NoError(t, err)
	require.Equal(t, "spiffe://a.example/meshfed/gateway/ingress", id.String())
	_, err = RoleID(tdA, model.Role("sidecar"))
	require.ErrorContains(t, err, `certs: unknown role "sidecar", want agent, egress or ingress`)
}

// An SVID with DNS and IP SANs keeps its one URI SAN, so SPIFFE peers
// accept it as before, and a peer that is not SPIFFE-aware verifies it by
// host name or address.
func TestIssueSVIDWithDNSAndIPSANs(t *testing.T) {
	caDir, out := t.TempDir(), t.TempDir()
	require.NoError(t, InitDevCA(DevCAOptions{Dir: caDir, TrustDomain: tdA}))
	id := mustID(t, tdA, "/meshfed/agent")
	require.NoError(t, IssueSVID(caDir, id, out, "agent", WithDNSNames("hamlet.mesh-a.example", "*.agents.mesh-a.example"),
		WithIPAddresses(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("2001:db8::1"))))
	leaf := readCert(t, filepath.Join(out, "agent.pem"))
	requireLeaf(t, leaf, "spiffe://a.example/meshfed/agent")
	require.Equal(t, []string{"hamlet.mesh-a.example", "*.agents.mesh-a.example"}, leaf.DNSNames)
	require.Len(t, leaf.IPAddresses, 2)
	require.NoError(t, CheckPeerLeaf(leaf, x509.ExtKeyUsageServerAuth, time.Now()))
	require.NoError(t, CheckPeerLeaf(leaf, x509.ExtKeyUsageClientAuth, time.Now()))
	svid, err := x509svid.Load(filepath.Join(out, "agent.pem"), filepath.Join(out, "agent-key.pem"))
	require.NoError(t, err)
	ca, err := LoadCA(caDir)
	require.NoError(t, err)
	gotID, _, err := x509svid.Verify(svid.Certificates, ca.X509Bundle())
	require.NoError(t, err)
	require.Equal(t, id, gotID)

	// The Hamlet server's TLS configuration with this SVID: a SPIFFE client
	// and a web PKI client that verifies a host name or address both
	// connect.
	caB := newCA(t, tdB)
	bundles := NewBundleSet(nil, nil)
	defer bundles.Close()
	require.NoError(t, bundles.Set(ca.Bundle()))
	require.NoError(t, bundles.Set(caB.Bundle()))
	client, err := caB.IssueX509SVID(mustID(t, tdB, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	srv := startEchoServer(t, ServerTLSConfig(svid, bundles, tlsconfig.AuthorizeMemberOf(tdB)))
	_, err = dial(t, srv.addr, ClientTLSConfig(client, bundles, tlsconfig.AuthorizeID(id)))
	require.NoError(t, err)
	require.NoError(t, srv.serverErr(t))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	clientCert := tls.Certificate{Certificate: [][]byte{client.Certificates[0].Raw}, PrivateKey: client.PrivateKey}
	for _, name := range []string{"hamlet.mesh-a.example", "a1.agents.mesh-a.example", "127.0.0.1", "2001:db8::1"} {
		_, err = dial(t, srv.addr, &tls.Config{RootCAs: roots, ServerName: name, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12})
		require.NoError(t, err, name)
		require.NoError(t, srv.serverErr(t))
	}
	_, err = dial(t, srv.addr, &tls.Config{RootCAs: roots, ServerName: "other.mesh-a.example", Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12})
	require.ErrorContains(t, err, "x509: certificate is valid for hamlet.mesh-a.example, *.agents.mesh-a.example, not other.mesh-a.example")
	_ = srv.serverErr(t)

	for name, want := range map[string]string{
		"":                 `certs: DNS name "" must be a host name of at most 253 characters`,
		"bad_name.example": `certs: DNS name "bad_name.example" holds '_'; only letters, digits, hyphens and dots are allowed`,
		"-a.example":       `certs: DNS name "-a.example" has an empty, too long or hyphen-edged label "-a"`,
		"a..example":       `certs: DNS name "a..example" has an empty, too long or hyphen-edged label ""`,
		"*.":               `certs: DNS name "*." must be a host name of at most 253 characters`,
	} {
		require.ErrorContains(t, IssueSVID(caDir, id, out, "bad", WithDNSNames(name)), want, name)
	}
}
