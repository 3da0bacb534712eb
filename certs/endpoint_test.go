package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// startBundleServer runs NewBundleServer on a loopback listener and returns
// its URL and a stop function (also run at cleanup).
func startBundleServer(t *testing.T, cfg BundleServerConfig) (string, func()) {
	t.Helper()
	return startBundleServerLog(t, cfg, zaptest.NewLogger(t))
}

func startBundleServerLog(t *testing.T, cfg BundleServerConfig, log *zap.Logger) (string, func()) {
	t.Helper()
	srv, err := NewBundleServer(cfg, log)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		require.NoError(t, srv.Close())
		require.NoError(t, <-done)
	}
	t.Cleanup(stop)
	return "https://" + ln.Addr().String() + "/bundle", stop
}

// staticCert is a CertificateSource that never changes.
type staticCert struct{ c *tls.Certificate }

func (s staticCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.c, nil }

// webCert is a web PKI server certificate for 127.0.0.1 from its own root,
// and the root written to a CA file.
func webCert(t *testing.T) (staticCert, string) {
	t.Helper()
	root := newCA(t, spiffeid.RequireTrustDomainFromString("web.example"))
	tmpl := leafTemplate()
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	chain, key, err := root.IssueTemplate(tmpl)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(chain, key)
	require.NoError(t, err)
	return staticCert{&cert}, writePEM(t, "web-ca.pem", root.CertPEM())
}

func writePEM(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
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

// switchSVID is an SVID source whose SVID a test replaces.
type switchSVID struct{ cur atomic.Pointer[x509svid.SVID] }

func (s *switchSVID) GetX509SVID() (*x509svid.SVID, error) { return s.cur.Load(), nil }

func newSwitchSVID(t *testing.T, ca *CA, id spiffeid.ID) *switchSVID {
	t.Helper()
	s := &switchSVID{}
	s.set(t, ca, id)
	return s
}

func (s *switchSVID) set(t *testing.T, ca *CA, id spiffeid.ID) {
	t.Helper()
	v, err := ca.IssueX509SVID(id, time.Hour)
	require.NoError(t, err)
	s.cur.Store(v)
}

func bundleOf(t *testing.T, s *BundleSet, td spiffeid.TrustDomain) []*x509.Certificate {
	t.Helper()
	b, err := s.GetX509BundleForTrustDomain(td)
	require.NoError(t, err)
	return b.X509Authorities()
}

func stateOf(t *testing.T, s *BundleSet, td spiffeid.TrustDomain) BundleState {
	t.Helper()
	for _, st := range s.States() {
		if st.TrustDomain == td.Name() {
			return st
		}
	}
	t.Fatalf("no state for %s", td.Name())
	return BundleState{}
}

func TestEndpointHTTPSSPIFFEFetchAndRefreshAtHint(t *testing.T) {
	caB, caB2 := newCA(t, tdB), newCA(t, tdB)
	endpointID := mustID(t, tdB, "/bundle-endpoint")
	endpointSVID, err := caB.IssueX509SVID(endpointID, time.Hour)
	require.NoError(t, err)
	served := servedSet(t, caB.Bundle())
	serverMetrics := newMetrics(t)
	url, _ := startBundleServer(t, BundleServerConfig{
		TrustDomain: tdB, Bundles: served, SVID: endpointSVID, RefreshHint: time.Second, Metrics: serverMetrics,
	})

	cfg := EndpointConfig{TrustDomain: tdB, URL: url, Profile: ProfileHTTPSSPIFFE, EndpointID: endpointID,
		BootstrapFile: writePEM(t, "b.pem", caB.CertPEM())}
	got, err := FetchBundle(context.Background(), cfg, servedSet(t, caB.Bundle()))
	require.NoError(t, err)
	hint, ok := got.RefreshHint()
	require.True(t, ok)
	require.Equal(t, time.Second, hint)

	wrongID := cfg
	wrongID.EndpointID = mustID(t, tdB, "/someone-else")
	_, err = FetchBundle(context.Background(), wrongID, servedSet(t, caB.Bundle()))
	require.ErrorContains(t, err, `unexpected ID "spiffe://b.example/bundle-endpoint"`)

	m := newMetrics(t)
	local := NewBundleSet(zaptest.NewLogger(t), m)
	defer local.Close()
	changed, cancel := local.Subscribe()
	defer cancel()
	// The default refresh is far away, so only the 1s hint can bring the
	// rotated bundle in.
	cfg.DefaultRefresh = time.Hour
	require.NoError(t, local.AddEndpoint(cfg))
	require.Eventually(t, func() bool {
		return counterValue(m.bundleFetches.WithLabelValues("b.example", ResultSuccess)) >= 1
	}, waitTimeout, 10*time.Millisecond)
	waitSignal(t, changed) // the bootstrap bundle, taken at once

	require.NoError(t, served.Set(spiffebundle.FromX509Authorities(tdB, []*x509.Certificate{caB.Certificate(), caB2.Certificate()})))
	waitSignal(t, changed)
	require.Equal(t, []*x509.Certificate{caB.Certificate(), caB2.Certificate()}, bundleOf(t, local, tdB))
	require.Equal(t, 1.0, counterValue(m.rotations.WithLabelValues(KindBundle, "b.example")))
	require.GreaterOrEqual(t, counterValue(serverMetrics.served.WithLabelValues("200")), 3.0, "one fetch by hand (the other is refused in the handshake), two by the poller")
}

// The federation spec: the bootstrap bundle authenticates the first fetch
// only; after it, the latest fetched bundle authenticates the endpoint.
func TestEndpointBootstrapIsReplacedByTheFirstFetch(t *testing.T) {
	ca1, ca2 := newCA(t, tdB), newCA(t, tdB)
	endpointID := mustID(t, tdB, "/meshfed/agent")
	svid := newSwitchSVID(t, ca1, endpointID)
	served := servedSet(t) // empty: the endpoint answers 500 at first
	url, _ := startBundleServer(t, BundleServerConfig{TrustDomain: tdB, Bundles: served, SVID: svid})

	m := newMetrics(t)
	local := NewBundleSet(zaptest.NewLogger(t), m)
	defer local.Close()
	require.NoError(t, local.AddEndpoint(EndpointConfig{
		TrustDomain: tdB, URL: url, Profile: ProfileHTTPSSPIFFE, EndpointID: endpointID,
		BootstrapFile:  writePEM(t, "b.pem", ca1.CertPEM()),
		DefaultRefresh: 20 * time.Millisecond, MinRetry: 20 * time.Millisecond,
	}))
	require.Eventually(t, func() bool {
		return counterValue(m.bundleFetches.WithLabelValues("b.example", ResultFailure)) >= 1
	}, waitTimeout, 10*time.Millisecond)
	st := stateOf(t, local, tdB)
	require.Equal(t, OriginBootstrap, st.Origin, "the bootstrap bundle is in use before the first fetch")
	require.Contains(t, st.LastError, "the endpoint answered 500 Internal Server Error")
	require.Empty(t, local.Missing())

	// The endpoint now serves ca1 and ca2: the fetch replaces the bootstrap.
	require.NoError(t, served.Set(spiffebundle.FromX509Authorities(tdB, []*x509.Certificate{ca1.Certificate(), ca2.Certificate()})))
	require.Eventually(t, func() bool { return len(bundleOf(t, local, tdB)) == 2 }, waitTimeout, 10*time.Millisecond)
	require.Equal(t, OriginEndpoint, stateOf(t, local, tdB).Origin)

	// It moves to ca2 alone; the fetched bundle (ca1 and ca2) authenticates
	// the endpoint's new ca2 SVID, which the bootstrap bundle could not.
	svid.set(t, ca2, endpointID)
	require.NoError(t, served.Set(ca2.Bundle()))
	require.Eventually(t, func() bool { return len(bundleOf(t, local, tdB)) == 1 }, waitTimeout, 10*time.Millisecond)
	require.Equal(t, []*x509.Certificate{ca2.Certificate()}, bundleOf(t, local, tdB))

	// An endpoint presenting a ca1 SVID is now refused: the bootstrap
	// bundle is gone, not kept as a fallback.
	svid.set(t, ca1, endpointID)
	require.Eventually(t, func() bool {
		return counterValue(m.refused.WithLabelValues(SideClient, ReasonUnknownAuthority)) >= 1
	}, waitTimeout, 10*time.Millisecond)
	require.Equal(t, []*x509.Certificate{ca2.Certificate()}, bundleOf(t, local, tdB))
}

func TestEndpointWithoutBundleSaysSo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "https://" + ln.Addr().String() + "/bundle"
	require.NoError(t, ln.Close()) // nothing listens: every fetch fails

	core, logs := observer.New(zap.InfoLevel)
	local := NewBundleSet(zap.New(core), nil)
	defer local.Close()
	require.NoError(t, local.AddEndpoint(EndpointConfig{TrustDomain: tdB, URL: url, Profile: ProfileHTTPSWeb, MinRetry: 20 * time.Millisecond}))
	require.Eventually(t, func() bool { return logs.FilterField(zap.String("trust_domain", "b.example")).Len() >= 2 }, waitTimeout, 10*time.Millisecond)
	require.Equal(t, []spiffeid.TrustDomain{tdB}, local.Missing())
	for _, e := range logs.All() {
		require.Equal(t, "no usable trust bundle yet; peers of this trust domain cannot be verified until a fetch succeeds", e.Message)
	}
	st := stateOf(t, local, tdB)
	require.Empty(t, st.Origin)
	require.Contains(t, st.LastError, "connection refused")
	_, err = local.GetX509BundleForTrustDomain(tdB)
	require.ErrorContains(t, err, `certs: no trust bundle for trust domain "b.example"`)
}

func TestEndpointHTTPSWebKeepsLastGoodOnFailure(t *testing.T) {
	caB := newCA(t, tdB)
	cert, caFile := webCert(t)
	url, stop := startBundleServer(t, BundleServerConfig{TrustDomain: tdB, Bundles: servedSet(t, caB.Bundle()), Web: cert})

	m := newMetrics(t)
	local := NewBundleSet(zaptest.NewLogger(t), m)
	defer local.Close()
	require.NoError(t, local.AddEndpoint(EndpointConfig{
		TrustDomain: tdB, URL: url, Profile: ProfileHTTPSWeb, WebCAFile: caFile,
		DefaultRefresh: 20 * time.Millisecond, MinRetry: 20 * time.Millisecond,
	}))
	require.Eventually(t, func() bool {
		_, err := local.GetX509BundleForTrustDomain(tdB)
		return err == nil
	}, waitTimeout, 10*time.Millisecond)

	stop()
	require.Eventually(t, func() bool {
		return counterValue(m.bundleFetches.WithLabelValues("b.example", ResultFailure)) >= 2
	}, waitTimeout, 10*time.Millisecond)
	require.Equal(t, []*x509.Certificate{caB.Certificate()}, bundleOf(t, local, tdB))
	require.Equal(t, OriginEndpoint, stateOf(t, local, tdB).Origin)
}

func TestEndpointRejectsBundleOfAnotherTrustDomain(t *testing.T) {
	caEvil := newCA(t, tdEvil)
	cert, caFile := webCert(t)
	url, _ := startBundleServer(t, BundleServerConfig{TrustDomain: tdEvil, Bundles: servedSet(t, caEvil.Bundle()), Web: cert})
	cfg := EndpointConfig{TrustDomain: tdB, URL: url, Profile: ProfileHTTPSWeb, WebCAFile: caFile,
		DefaultRefresh: 20 * time.Millisecond, MinRetry: 20 * time.Millisecond}

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

// The latest fetched bundle outlives a restart; a bootstrap bundle the
// operator replaced afterwards wins over it.
func TestEndpointSavedBundleAcrossRestarts(t *testing.T) {
	ca1, ca2 := newCA(t, tdB), newCA(t, tdB)
	endpointID := mustID(t, tdB, "/meshfed/agent")
	served := servedSet(t, spiffebundle.FromX509Authorities(tdB, []*x509.Certificate{ca1.Certificate(), ca2.Certificate()}))
	url, stop := startBundleServer(t, BundleServerConfig{TrustDomain: tdB, Bundles: served, SVID: newSwitchSVID(t, ca1, endpointID)})
	dir := t.TempDir()
	cfg := EndpointConfig{TrustDomain: tdB, URL: url, Profile: ProfileHTTPSSPIFFE, EndpointID: endpointID,
		BootstrapFile: filepath.Join(dir, "bootstrap.pem"), SavedFile: filepath.Join(dir, "saved", "b.example.json")}
	require.NoError(t, os.WriteFile(cfg.BootstrapFile, ca1.CertPEM(), 0o644))
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(cfg.BootstrapFile, old, old))

	first := NewBundleSet(zaptest.NewLogger(t), nil)
	require.NoError(t, first.AddEndpoint(cfg))
	require.Eventually(t, func() bool { _, err := os.Stat(cfg.SavedFile); return err == nil }, waitTimeout, 10*time.Millisecond)
	require.NoError(t, first.Close())
	stop()

	// The endpoint is down: the restarted set starts from the saved bundle.
	second := NewBundleSet(zaptest.NewLogger(t), nil)
	require.NoError(t, second.AddEndpoint(cfg))
	require.Equal(t, OriginSaved, stateOf(t, second, tdB).Origin)
	require.Equal(t, []*x509.Certificate{ca1.Certificate(), ca2.Certificate()}, bundleOf(t, second, tdB))
	require.NoError(t, second.Close())

	// The operator puts a new bootstrap bundle in place: it is newer, so it wins.
	require.NoError(t, os.WriteFile(cfg.BootstrapFile, ca2.CertPEM(), 0o644))
	saved := old.Add(30 * time.Minute) // older than the new bootstrap file whatever the file system's clock resolution
	require.NoError(t, os.Chtimes(cfg.SavedFile, saved, saved))
	third := NewBundleSet(zaptest.NewLogger(t), nil)
	defer third.Close()
	require.NoError(t, third.AddEndpoint(cfg))
	require.Equal(t, OriginBootstrap, stateOf(t, third, tdB).Origin)
	require.Equal(t, []*x509.Certificate{ca2.Certificate()}, bundleOf(t, third, tdB))
}

func TestLoadBundleFileReadsPEMAndSPIFFEFormat(t *testing.T) {
	ca := newCA(t, tdB)
	b, err := LoadBundleFile(tdB, writePEM(t, "b.pem", ca.CertPEM()))
	require.NoError(t, err)
	require.Equal(t, []*x509.Certificate{ca.Certificate()}, b.X509Authorities())
	doc, err := ca.Bundle().Marshal()
	require.NoError(t, err)
	b, err = LoadBundleFile(tdB, writePEM(t, "b.json", doc))
	require.NoError(t, err)
	require.Equal(t, []*x509.Certificate{ca.Certificate()}, b.X509Authorities())

	path := writePEM(t, "junk.json", []byte("{not json"))
	_, err = LoadBundleFile(tdB, path)
	require.ErrorContains(t, err, `certs: bundle file `+path+` for trust domain "b.example": spiffebundle: unable to parse JWKS`)
	path = writePEM(t, "other.pem", newCA(t, tdEvil).CertPEM())
	_, err = LoadBundleFile(tdB, path)
	require.ErrorContains(t, err, `certs: bundle from file `+path+` is for trust domain "evil.example", want "b.example"`)
}

func TestEndpointConfigErrors(t *testing.T) {
	s := NewBundleSet(nil, nil)
	defer s.Close()
	id := mustID(t, tdB, "/meshfed/agent")
	for _, tc := range []struct {
		cfg  EndpointConfig
		want string
	}{
		{EndpointConfig{TrustDomain: tdB, URL: "https://x", Profile: "http"}, `certs: bundle endpoint https://x has profile "http", want https_spiffe or https_web`},
		{EndpointConfig{TrustDomain: tdB, URL: "https://x", Profile: ProfileHTTPSSPIFFE}, "certs: bundle endpoint https://x uses profile https_spiffe and needs an endpoint SPIFFE ID"},
		{EndpointConfig{TrustDomain: tdB, URL: "http://x", Profile: ProfileHTTPSWeb}, `certs: bundle endpoint for trust domain "b.example": URL "http://x": the scheme must be https`},
		{EndpointConfig{TrustDomain: tdB, URL: "https://u:secret@x", Profile: ProfileHTTPSWeb}, `certs: bundle endpoint for trust domain "b.example": URL "https://u:xxxxx@x" must not hold user information`},
		{EndpointConfig{TrustDomain: tdB, URL: "https://x", Profile: ProfileHTTPSSPIFFE, EndpointID: mustID(t, tdA, "/server"), BootstrapFile: "b.pem"},
			`certs: bundle endpoint https://x is not self-serving (its SPIFFE ID "spiffe://a.example/server" is in trust domain "a.example")`},
		{EndpointConfig{TrustDomain: tdB, URL: "https://x", Profile: ProfileHTTPSWeb, BootstrapFile: "b.pem"}, "certs: bundle endpoint https://x uses profile https_web; an endpoint SPIFFE ID and a bootstrap bundle are for https_spiffe"},
		{EndpointConfig{TrustDomain: tdB, URL: "https://x", Profile: ProfileHTTPSSPIFFE, EndpointID: id, WebCAFile: "ca.pem"}, "certs: bundle endpoint https://x uses profile https_spiffe; a web CA file is for https_web"},
		{EndpointConfig{TrustDomain: tdB, URL: "https://x", Profile: ProfileHTTPSSPIFFE, EndpointID: id, BootstrapFile: "/nonexistent/b.pem"}, "certs: bootstrap bundle: stat /nonexistent/b.pem: no such file or directory"},
		{EndpointConfig{TrustDomain: tdB, URL: "https://x", Profile: ProfileHTTPSWeb, WebCAFile: "/nonexistent/ca.pem"}, "certs: web CA file: open /nonexistent/ca.pem: no such file or directory"},
	} {
		require.ErrorContains(t, s.AddEndpoint(tc.cfg), tc.want)
	}
	require.Empty(t, s.States(), "a refused endpoint claims nothing")
	_, err := NewBundleServer(BundleServerConfig{TrustDomain: tdB, Bundles: s, RefreshHint: time.Minute}, nil)
	require.ErrorContains(t, err, "certs: bundle server needs an SVID (https_spiffe) or a web certificate (https_web)")
	_, err = NewBundleServer(BundleServerConfig{TrustDomain: tdB, Bundles: s, RefreshHint: 500 * time.Millisecond}, nil)
	require.ErrorContains(t, err, "certs: bundle server refresh hint 500ms is under a second; spiffe_refresh_hint is in seconds")
}

func TestDefaultRefreshHint(t *testing.T) {
	require.Equal(t, time.Hour, DefaultRefreshHint(DefaultLeafTTL), "a 30-day SVID is capped at an hour")
	require.Equal(t, 6*time.Minute, DefaultRefreshHint(time.Hour), "SPIRE's default 1h SVID")
	require.Equal(t, time.Minute, DefaultRefreshHint(5*time.Minute), "short SVIDs poll at most every minute")
	require.Equal(t, 7*time.Minute+33*time.Second, DefaultRefreshHint(75*time.Minute+35*time.Second), "whole seconds")
}

// A failed fetch is retried with a backoff from the floor up to the
// refresh interval, each wait within its doubling band, and the schedule
// shows in the state: the failures in a row, the last error, the next
// fetch. At a cold start the first retry comes within seconds, not at
// the refresh interval.
func TestEndpointRetriesWithBackoffUpToTheRefreshInterval(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "https://" + ln.Addr().String() + "/bundle"
	require.NoError(t, ln.Close()) // nothing listens: every fetch fails

	const floor, refresh = 50 * time.Millisecond, 400 * time.Millisecond
	local := NewBundleSet(zap.NewNop(), nil)
	defer local.Close()
	require.NoError(t, local.AddEndpoint(EndpointConfig{TrustDomain: tdB, URL: url, Profile: ProfileHTTPSWeb, MinRetry: floor, DefaultRefresh: refresh}))
	// The wait chosen after the n-th failure in a row, as the state shows
	// it (the next fetch is scheduled just after the error is recorded).
	waits := map[int]time.Duration{}
	require.Eventually(t, func() bool {
		st := stateOf(t, local, tdB)
		if st.Failures > 0 && !st.NextFetch.IsZero() {
			if _, ok := waits[st.Failures]; !ok {
				waits[st.Failures] = st.NextFetch.Sub(st.LastErrorTime)
			}
		}
		return st.Failures >= 8
	}, waitTimeout, time.Millisecond)
	require.GreaterOrEqual(t, len(waits), 4, "several failures seen: %v", waits)
	for n, d := range waits {
		lo := min(floor<<(n-1), refresh/3)
		hi := min(3*floor<<(n-1), refresh)
		require.GreaterOrEqual(t, d, lo, "wait after failure %d", n)
		require.LessOrEqual(t, d, hi+20*time.Millisecond, "wait after failure %d", n)
	}
	st := stateOf(t, local, tdB)
	require.Contains(t, st.LastError, "connection refused")
	require.True(t, st.LastFetch.IsZero())

	cold := NewBundleSet(zap.NewNop(), nil)
	defer cold.Close()
	require.NoError(t, cold.AddEndpoint(EndpointConfig{TrustDomain: tdB, URL: url, Profile: ProfileHTTPSWeb}))
	require.Eventually(t, func() bool { return stateOf(t, cold, tdB).Failures == 1 }, waitTimeout, time.Millisecond)
	st = stateOf(t, cold, tdB)
	d := st.NextFetch.Sub(st.LastErrorTime)
	require.GreaterOrEqual(t, d, time.Second, "the first retry of a cold start")
	require.LessOrEqual(t, d, 3*time.Second+20*time.Millisecond, "the first retry of a cold start")
}

// An endpoint's refresh hint is followed between a second and an hour;
// without one, the configured default applies.
func TestRefreshHintIsHonouredWithinBounds(t *testing.T) {
	ca := newCA(t, tdB)
	s := NewBundleSet(zap.NewNop(), nil)
	defer s.Close()
	cfg := EndpointConfig{TrustDomain: tdB, DefaultRefresh: 7 * time.Minute}
	for _, tc := range []struct {
		hint, want time.Duration
	}{
		{0, 7 * time.Minute},
		{time.Millisecond, time.Second},
		{30 * time.Second, 30 * time.Second},
		{3 * time.Hour, time.Hour},
	} {
		b := ca.Bundle()
		if tc.hint > 0 {
			b.SetRefreshHint(tc.hint)
		}
		require.Equal(t, tc.want, s.refreshOf(cfg, b), "hint %s", tc.hint)
	}
	require.Equal(t, 7*time.Minute, s.refreshOf(cfg, nil), "no bundle in use")
	hinted := ca.Bundle()
	hinted.SetRefreshHint(2 * time.Second)
	require.NoError(t, s.Set(hinted))
	require.Equal(t, 2*time.Second, s.refreshOf(cfg, nil), "the hint of the bundle in use")
}
