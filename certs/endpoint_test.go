package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// startBundleServer runs NewBundleServer on a loopback listener and returns
// its URL and a stop function (also run at cleanup).
func startBundleServer(t *testing.T, cfg BundleServerConfig) (string, func()) {
	t.Helper()
	srv, err := NewBundleServer(cfg, zaptest.NewLogger(t))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		require.NoError(t, srv.Close())
		require.True(t, errors.Is(<-done, http.ErrServerClosed))
	}
	t.Cleanup(stop)
	return "https://" + ln.Addr().String() + "/bundle", stop
}

// webCert is a web PKI server certificate for 127.0.0.1 from its own root.
func webCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	root := newCA(t, spiffeid.RequireTrustDomainFromString("web.example"))
	tmpl := leafTemplate()
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	chain, key, err := root.IssueTemplate(tmpl)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(chain, key)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(root.Certificate())
	return cert, pool
}

func servedSet(t *testing.T, bundles ...*spiffebundle.Bundle) *BundleSet {
	t.Helper()
	s := NewBundleSet(zaptest.NewLogger(t), nil)
	t.Cleanup(func() { _ = s.Close() })
	for _, b := range bundles {
		require.NoError(t, s.Set(b))
	}
	return s
}

func TestEndpointHTTPSSPIFFEFetchAndRefreshAtHint(t *testing.T) {
	caB, caB2 := newCA(t, tdB), newCA(t, tdB)
	endpointID := mustID(t, tdB, "/bundle-endpoint")
	endpointSVID, err := caB.IssueX509SVID(endpointID, time.Hour)
	require.NoError(t, err)
	served := servedSet(t, caB.Bundle())
	url, _ := startBundleServer(t, BundleServerConfig{
		TrustDomain: tdB, Bundles: served, SVID: endpointSVID, RefreshHint: time.Second,
	})

	m := newMetrics(t)
	local := NewBundleSet(zaptest.NewLogger(t), m)
	defer local.Close()
	require.NoError(t, local.Set(caB.Bundle())) // bootstrap, authenticates the endpoint
	cfg := EndpointConfig{TrustDomain: tdB, URL: url, Profile: ProfileHTTPSSPIFFE, EndpointID: endpointID}

	got, err := FetchBundle(context.Background(), cfg, local)
	require.NoError(t, err)
	hint, ok := got.RefreshHint()
	require.True(t, ok)
	require.Equal(t, time.Second, hint)

	wrongID := cfg
	wrongID.EndpointID = mustID(t, tdB, "/someone-else")
	_, err = FetchBundle(context.Background(), wrongID, local)
	require.ErrorContains(t, err, `unexpected ID "spiffe://b.example/bundle-endpoint"`)

	changed, cancel := local.Subscribe()
	defer cancel()
	// The default refresh is far away, so only the 1s hint can bring the
	// rotated bundle in.
	cfg.DefaultRefresh = time.Hour
	require.NoError(t, local.AddEndpoint(cfg))
	require.Eventually(t, func() bool {
		return counterValue(m.bundleFetches.WithLabelValues("b.example", ResultSuccess)) >= 1
	}, waitTimeout, 10*time.Millisecond)

	require.NoError(t, served.Set(spiffebundle.FromX509Authorities(tdB, []*x509.Certificate{caB.Certificate(), caB2.Certificate()})))
	waitSignal(t, changed)
	b, err := local.GetX509BundleForTrustDomain(tdB)
	require.NoError(t, err)
	require.True(t, b.HasX509Authority(caB2.Certificate()))
	require.Len(t, b.X509Authorities(), 2)
	require.Equal(t, 1.0, counterValue(m.rotations.WithLabelValues(KindBundle, "b.example")))
}

func TestEndpointHTTPSWebKeepsLastGoodOnFailure(t *testing.T) {
	caB := newCA(t, tdB)
	cert, roots := webCert(t)
	url, stop := startBundleServer(t, BundleServerConfig{TrustDomain: tdB, Bundles: servedSet(t, caB.Bundle()), Certificate: &cert})

	m := newMetrics(t)
	local := NewBundleSet(zaptest.NewLogger(t), m)
	defer local.Close()
	require.NoError(t, local.AddEndpoint(EndpointConfig{
		TrustDomain: tdB, URL: url, Profile: ProfileHTTPSWeb, WebPKIRoots: roots,
		DefaultRefresh: 20 * time.Millisecond, RetryInterval: 20 * time.Millisecond,
	}))
	require.Eventually(t, func() bool {
		_, err := local.GetX509BundleForTrustDomain(tdB)
		return err == nil
	}, waitTimeout, 10*time.Millisecond)

	stop()
	require.Eventually(t, func() bool {
		return counterValue(m.bundleFetches.WithLabelValues("b.example", ResultFailure)) >= 2
	}, waitTimeout, 10*time.Millisecond)
	b, err := local.GetX509BundleForTrustDomain(tdB)
	require.NoError(t, err)
	require.True(t, b.HasX509Authority(caB.Certificate()))

	// Without the right roots the web profile fails the handshake.
	_, err = FetchBundle(context.Background(), EndpointConfig{TrustDomain: tdB, URL: url, Profile: ProfileHTTPSWeb}, nil)
	require.Error(t, err)
}

func TestEndpointRejectsBundleOfAnotherTrustDomain(t *testing.T) {
	caEvil := newCA(t, tdEvil)
	cert, roots := webCert(t)
	url, _ := startBundleServer(t, BundleServerConfig{TrustDomain: tdEvil, Bundles: servedSet(t, caEvil.Bundle()), Certificate: &cert})
	cfg := EndpointConfig{TrustDomain: tdB, URL: url, Profile: ProfileHTTPSWeb, WebPKIRoots: roots,
		DefaultRefresh: 20 * time.Millisecond, RetryInterval: 20 * time.Millisecond}

	_, err := FetchBundle(context.Background(), cfg, nil)
	require.ErrorContains(t, err, `certs: bundle from endpoint `+url+` is for trust domain "evil.example", want "b.example"`)

	m := newMetrics(t)
	local := NewBundleSet(zaptest.NewLogger(t), m)
	defer local.Close()
	require.NoError(t, local.AddEndpoint(cfg))
	require.Eventually(t, func() bool {
		return counterValue(m.bundleFetches.WithLabelValues("b.example", ResultFailure)) >= 1
	}, waitTimeout, 10*time.Millisecond)
	_, err = local.GetX509BundleForTrustDomain(tdB)
	require.ErrorContains(t, err, `certs: no trust bundle for trust domain "b.example"`)
}

func TestEndpointConfigErrors(t *testing.T) {
	s := NewBundleSet(nil, nil)
	defer s.Close()
	require.ErrorContains(t, s.AddEndpoint(EndpointConfig{TrustDomain: tdB, URL: "https://x", Profile: "http"}),
		`certs: bundle endpoint https://x has profile "http", want https_spiffe or https_web`)
	require.ErrorContains(t, s.AddEndpoint(EndpointConfig{TrustDomain: tdB, URL: "https://x", Profile: ProfileHTTPSSPIFFE}),
		"certs: bundle endpoint https://x uses profile https_spiffe and needs an endpoint SPIFFE ID")
	_, err := NewBundleServer(BundleServerConfig{TrustDomain: tdB, Bundles: s}, nil)
	require.ErrorContains(t, err, "certs: bundle server needs an SVID (https_spiffe) or a web certificate (https_web)")
}
