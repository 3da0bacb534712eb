package certs

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

func TestWebCertificateReloadsAndKeepsLastGood(t *testing.T) {
	root := newCA(t, spiffeid.RequireTrustDomainFromString("web.example"))
	issue := func(host string) ([]byte, PrivateKeyPEM) {
		tmpl := leafTemplate()
		tmpl.DNSNames = []string{host}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		chain, key, err := root.IssueTemplate(tmpl)
		require.NoError(t, err)
		return chain, key
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "web.pem"), filepath.Join(dir, "web-key.pem")
	_, err := NewWebCertificate(certFile, keyFile, 0, nil, nil)
	require.ErrorContains(t, err, "certs: load web certificate "+certFile+" with key "+keyFile+": open "+certFile+": no such file or directory")

	chain, key := issue("one.example")
	require.NoError(t, writeFileAtomic(keyFile, key, keyMode))
	require.NoError(t, writeFileAtomic(certFile, chain, certMode))
	m := newMetrics(t)
	w, err := NewWebCertificate(certFile, keyFile, 0, zaptest.NewLogger(t), m)
	require.NoError(t, err)
	defer w.Close()
	host := func() string {
		c, err := w.GetCertificate(&tls.ClientHelloInfo{})
		require.NoError(t, err)
		return c.Leaf.DNSNames[0]
	}
	require.Equal(t, "one.example", host())

	chain, key = issue("two.example")
	require.NoError(t, writeFileAtomic(keyFile, key, keyMode))
	require.NoError(t, writeFileAtomic(certFile, chain, certMode))
	require.Eventually(t, func() bool { return host() == "two.example" }, waitTimeout, 10*time.Millisecond)
	require.Equal(t, 1.0, counterValue(m.rotations.WithLabelValues(KindWebCertificate, "bundle_endpoint")))

	// A certificate whose key is not in the key file is refused; the last
	// good pair stays.
	chain, _ = issue("three.example")
	require.NoError(t, writeFileAtomic(certFile, chain, certMode))
	require.Eventually(t, func() bool {
		return counterValue(m.loadFailures.WithLabelValues(KindWebCertificate, "bundle_endpoint")) >= 1
	}, waitTimeout, 10*time.Millisecond)
	require.Equal(t, "two.example", host())
}
