package certs

import (
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// bundleFileServer is a set holding a.example's bundle and b.example's
// from a file of caB's CA, the file's path, the set's change signal, and
// an echo server of a.example that admits callers of b.example as the
// set verifies them.
func bundleFileServer(t *testing.T, m *Metrics, caB *CA) (*BundleSet, string, <-chan struct{}, *tlsEchoServer) {
	t.Helper()
	serverCA := newCA(t, tdA)
	path := filepath.Join(t.TempDir(), "b.example.pem")
	require.NoError(t, writeFileAtomic(path, caB.CertPEM(), certMode))
	bundles := NewBundleSet(zaptest.NewLogger(t), m)
	t.Cleanup(func() { _ = bundles.Close() })
	require.NoError(t, bundles.Set(serverCA.Bundle()))
	require.NoError(t, bundles.AddFile(tdB, path))
	changed, cancel := bundles.Subscribe()
	t.Cleanup(cancel)
	server, err := serverCA.IssueX509SVID(mustID(t, tdA, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	return bundles, path, changed, startEchoServer(t, ServerTLSConfig(server, bundles, tlsconfig.AuthorizeMemberOf(tdB)))
}

func TestBundleFileRotation(t *testing.T) {
	oldCA, newCA_ := newCA(t, tdB), newCA(t, tdB)
	m := newMetrics(t)
	bundles, path, changed, srv := bundleFileServer(t, m, oldCA)

	oldClient, err := oldCA.IssueX509SVID(mustID(t, tdB, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	newClient, err := newCA_.IssueX509SVID(mustID(t, tdB, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)

	_, err = dial(t, srv.addr, ClientTLSConfig(oldClient, bundles, tlsconfig.AuthorizeAny()))
	require.NoError(t, err)
	require.NoError(t, srv.serverErr(t))

	require.NoError(t, writeFileAtomic(path, newCA_.CertPEM(), certMode))
	waitSignal(t, changed)
	require.Equal(t, 1.0, counterValue(m.rotations.WithLabelValues(KindBundle, "b.example")))

	_, _ = dial(t, srv.addr, ClientTLSConfig(oldClient, bundles, tlsconfig.AuthorizeAny()))
	require.ErrorContains(t, srv.serverErr(t), "x509: certificate signed by unknown authority")
	_, err = dial(t, srv.addr, ClientTLSConfig(newClient, bundles, tlsconfig.AuthorizeAny()))
	require.NoError(t, err)
	require.NoError(t, srv.serverErr(t))

	mat, err := bundles.Material(tdB)
	require.NoError(t, err)
	require.Equal(t, string(newCA_.CertPEM()), string(mat.PEM))
	require.Equal(t, "a.example b.example", tdNames(bundles))
}

func tdNames(s *BundleSet) string {
	out := ""
	for i, td := range s.TrustDomains() {
		if i > 0 {
			out += " "
		}
		out += td.Name()
	}
	return out
}

func TestBundleFileRejectsForeignTrustDomain(t *testing.T) {
	caB, caEvil := newCA(t, tdB), newCA(t, tdEvil)
	dir := t.TempDir()
	path := filepath.Join(dir, "b.pem")
	require.NoError(t, writeFileAtomic(path, caEvil.CertPEM(), certMode))
	m := newMetrics(t)
	bundles := NewBundleSet(zaptest.NewLogger(t), m)
	defer bundles.Close()

	err := bundles.AddFile(tdB, path)
	require.ErrorContains(t, err, `certs: bundle from file `+path+` is for trust domain "evil.example", want "b.example"`)

	require.NoError(t, writeFileAtomic(path, caB.CertPEM(), certMode))
	require.NoError(t, bundles.AddFile(tdB, path))
	require.ErrorContains(t, bundles.AddFile(tdB, path), `certs: trust domain "b.example" already has a bundle source (file `+path+`)`)

	// A bad replacement is counted and the last good bundle stays.
	require.NoError(t, writeFileAtomic(path, caEvil.CertPEM(), certMode))
	require.Eventually(t, func() bool {
		return counterValue(m.loadFailures.WithLabelValues(KindBundle, "b.example")) >= 1
	}, waitTimeout, 10*time.Millisecond)
	got, err := bundles.GetX509BundleForTrustDomain(tdB)
	require.NoError(t, err)
	require.True(t, got.HasX509Authority(caB.Certificate()))
	require.Len(t, got.X509Authorities(), 1)

	_, err = bundles.GetX509BundleForTrustDomain(tdEvil)
	require.ErrorContains(t, err, `certs: no trust bundle for trust domain "evil.example"`)
	require.ErrorContains(t, bundles.Set(spiffebundle.New(tdA)), `certs: bundle from memory for trust domain "a.example" has no X.509 authorities`)
}

func TestBundleSetNeverMergesTrustDomains(t *testing.T) {
	caA, caB := newCA(t, tdA), newCA(t, tdB)
	bundles := NewBundleSet(nil, nil)
	defer bundles.Close()
	require.NoError(t, bundles.Set(caA.Bundle()))
	require.NoError(t, bundles.Set(caB.Bundle()))
	a, err := bundles.GetX509BundleForTrustDomain(tdA)
	require.NoError(t, err)
	require.Equal(t, []*x509.Certificate{caA.Certificate()}, a.X509Authorities())

	// A leaf claiming a.example but signed by b.example's CA must fail.
	svid := svidFromTemplate(t, caB, leafTemplate(mustID(t, tdA, "/meshfed/agent").URL()))
	server, err := caA.IssueX509SVID(mustID(t, tdA, "/server"), time.Hour)
	require.NoError(t, err)
	srv := startEchoServer(t, ServerTLSConfig(server, bundles, tlsconfig.AuthorizeAny()))
	_, _ = dial(t, srv.addr, ClientTLSConfig(svid, bundles, tlsconfig.AuthorizeAny()))
	require.ErrorContains(t, srv.serverErr(t), "x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority")
}

// Removing a trust domain drops its bundle at once: its peers are no
// longer verified, subscribers hear of it, and the trust domain can get a
// new source.
func TestRemovedBundleNoLongerVerifies(t *testing.T) {
	caB := newCA(t, tdB)
	bundles, path, changed, srv := bundleFileServer(t, newMetrics(t), caB)
	client, err := caB.IssueX509SVID(mustID(t, tdB, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	_, err = dial(t, srv.addr, ClientTLSConfig(client, bundles, tlsconfig.AuthorizeAny()))
	require.NoError(t, err)
	require.NoError(t, srv.serverErr(t))

	require.True(t, bundles.Remove(tdB))
	waitSignal(t, changed)
	require.Equal(t, "a.example", tdNames(bundles))
	require.Len(t, bundles.States(), 1)
	_, _ = dial(t, srv.addr, ClientTLSConfig(client, bundles, tlsconfig.AuthorizeAny()))
	require.ErrorContains(t, srv.serverErr(t), `no trust bundle for trust domain "b.example"`)
	require.False(t, bundles.Remove(tdB))

	require.NoError(t, bundles.AddFile(tdB, path))
	waitSignal(t, changed)
	require.Equal(t, "a.example b.example", tdNames(bundles))

	// Close stopped the watcher already; a Remove after it stops nothing twice.
	require.NoError(t, bundles.Close())
	require.True(t, bundles.Remove(tdB))
	require.Equal(t, "a.example", tdNames(bundles))
}

// A source removed while it was fetching neither saves nor uses what it
// fetched, nor touches the state of the trust domain's next source.
func TestRemovedSourceDoesNotComeBack(t *testing.T) {
	caB, caB2 := newCA(t, tdB), newCA(t, tdB)
	dir := t.TempDir()
	cfg := EndpointConfig{TrustDomain: tdB, URL: "https://127.0.0.1:1/bundle", Profile: ProfileHTTPSSPIFFE, EndpointID: mustID(t, tdB, "/meshfed/agent"),
		BootstrapFile: writePEM(t, "b.pem", caB.CertPEM()), SavedFile: filepath.Join(dir, "saved.json"), DefaultRefresh: time.Hour}
	bundles := NewBundleSet(zaptest.NewLogger(t), newMetrics(t))
	defer bundles.Close()
	require.NoError(t, bundles.AddEndpoint(cfg))
	bundles.mu.RLock()
	removed := bundles.sources[tdB]
	bundles.mu.RUnlock()
	require.True(t, bundles.Remove(tdB))

	bundles.fetched(cfg, removed, caB2.Bundle(), time.Hour)
	require.Empty(t, tdNames(bundles))
	require.NoFileExists(t, cfg.SavedFile)

	require.NoError(t, bundles.AddFile(tdB, writePEM(t, "b-file.pem", caB.CertPEM())))
	bundles.fetched(cfg, removed, caB2.Bundle(), time.Hour)
	bundles.fetchFailed(cfg, removed, fetchInfo{}, errors.New("refused"), time.Hour)
	require.Equal(t, []*x509.Certificate{caB.Certificate()}, bundleOf(t, bundles, tdB))
	st := stateOf(t, bundles, tdB)
	require.Empty(t, st.LastError)
	require.Zero(t, st.Failures)
}
