package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
)

// A consumer (mesh-a) restarted while the owner's bundle endpoint is down
// for longer than the bundle wait keeps serving what it imports from the
// owner and exports to it, with the bundle saved by its last run: no
// request fails either way. The failed fetches back off up to the
// owner's refresh hint (2 s), so the endpoint is fetched from again at
// the first retry once it is back.
func TestConsumerRestartedWhileTheBundleEndpointIsDown(t *testing.T) {
	testBundleEndpointDown(t, true)
}

// The same without the saved bundle (lost, or never written): past the
// bundle wait the gateways are served the bundle they last had, kept in
// the store, and the status says which imports are held and why until
// the bundle loads. The endpoint's refresh hint is not known then, so the
// backoff may grow up to the default refresh interval.
func TestConsumerRestartedWithoutSavedBundleHoldsTheImports(t *testing.T) {
	testBundleEndpointDown(t, false)
}

func testBundleEndpointDown(t *testing.T, saved bool) {
	const wait = 2 * time.Second
	var endpoint *switchProxy
	a, b := federate(t, options{maxBackoff: "2s", prepare: func(m *mesh) {
		if m.Name == "mesh-a" {
			endpoint = serveBundleThrough(t, m.peer, m)
		}
	}})
	a.bundleWait = wait
	td := spiffeid.RequireTrustDomainFromString(b.TrustDomain())
	eventually(t, "mesh-a fetched mesh-b's bundle", func(ctx context.Context) error {
		if st := bundleOf(ctx, t, a, td.Name()); st.Origin != certs.OriginEndpoint {
			return fmt.Errorf("mesh-b's bundle at mesh-a: %+v", st)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The egress ports are kept across restarts: read once, before the
	// agent that knows them is replaced.
	toB, toA := a.importedTCPAddr(t), b.importedTCPAddr(t)
	loops := []*requestLoop{
		startLoop(t, "mesh-a to payments over HTTP", func(ctx context.Context) error { _, err := a.importedHTTP(ctx, "/held"); return err }),
		startLoop(t, "mesh-a to payments over TCP", func(ctx context.Context) error { return echoTCP(ctx, toB) }),
		startLoop(t, "mesh-b to inventory over TCP", func(ctx context.Context) error { return echoTCP(ctx, toA) }),
	}
	for _, l := range loops {
		l.waitOK(t, 5)
	}

	endpoint.setUp(false)
	down := time.Now()
	a.stopAgent()
	if !saved {
		cfg := filepath.Join(filepath.Dir(a.ConfigPath()), "trust-bundles", td.Name()+".json")
		require.FileExists(t, cfg)
		require.NoError(t, os.Remove(cfg))
	}
	a.startAgent()
	// Longer than the bundle wait, with requests crossing all along.
	time.Sleep(3 * wait)
	for _, l := range loops {
		l.waitOK(t, 5)
	}
	st := agentStatus(ctx, t, a)
	var fetch certs.BundleState
	for _, s := range st.Bundles {
		if s.TrustDomain == td.Name() {
			fetch = s
		}
	}
	require.Contains(t, fetch.LastError, "certs: fetch bundle for trust domain \"mesh-b.example\" from https://")
	require.GreaterOrEqual(t, fetch.Failures, 2, "retried while down")
	require.NotEmpty(t, st.Problems(), "meshfed status exits with 2 while the endpoint is down")
	if saved {
		require.Equal(t, certs.OriginSaved, fetch.Origin)
		require.Empty(t, st.Held)
	} else {
		require.Empty(t, fetch.Origin, "the agent itself has no bundle of mesh-b")
		require.Len(t, st.Held, 1)
		h := st.Held[0]
		require.True(t, h.Held)
		require.Equal(t, []string{"mesh-b/payments"}, h.Imports)
		require.Equal(t, []string{"inventory"}, h.Exports)
		require.Contains(t, h.Reason, "the gateways keep the bundle they were last served")
	}

	failures := func() string {
		return a.metric(ctx, t, `meshfed_certs_bundle_fetches_total{result="failure",trust_domain="mesh-b.example"}`)
	}
	failed := failures()
	next := bundleOf(ctx, t, a, td.Name()).NextFetch
	up := time.Now()
	endpoint.setUp(true)
	if saved {
		// The saved bundle brings the endpoint's refresh hint, which caps
		// the backoff; without it, the default refresh interval (5m) does.
		require.False(t, next.After(up.Add(wait)), "the next fetch was due within the refresh interval: at %s, %s after the endpoint came back", next, next.Sub(up))
	}
	var fetched time.Time
	eventually(t, "mesh-a fetches mesh-b's bundle again", func(ctx context.Context) error {
		s := bundleOf(ctx, t, a, td.Name())
		if s.Origin != certs.OriginEndpoint || !s.LastFetch.After(up) {
			return fmt.Errorf("mesh-b's bundle at mesh-a: %+v", s)
		}
		fetched = s.LastFetch
		return nil
	})
	after, _ := strconv.Atoi(failures())
	before, _ := strconv.Atoi(failed)
	require.LessOrEqual(t, after, before+1, "fetched at the first retry after the endpoint came back (or the next, if one was under way)")
	eventually(t, "nothing held, and mesh-b connected to mesh-a again", func(ctx context.Context) error {
		s := agentStatus(ctx, t, a)
		if len(s.Held) > 0 || len(s.Problems()) > 0 {
			return fmt.Errorf("held %v, problems %v", s.Held, s.Problems())
		}
		return nil
	})
	for _, l := range loops {
		l.waitOK(t, 20)
		l.end()
	}
	for _, l := range loops {
		ok, failed := l.counts()
		t.Logf("%s: %d requests, %d failed", l.name, ok+failed, failed)
	}
	t.Logf("the endpoint was down %v; fetched %v after it came back (refresh hint %v)", up.Sub(down).Round(time.Millisecond), fetched.Sub(up).Round(time.Millisecond), wait)
	for _, l := range loops {
		_, failed := l.counts()
		require.Zero(t, failed, "%s: last error %v", l.name, l.err())
	}
}

// bundleOf is m's agent's state of the bundle of trust domain td.
func bundleOf(ctx context.Context, t *testing.T, m *mesh, td string) certs.BundleState {
	t.Helper()
	for _, s := range agentStatus(ctx, t, m).Bundles {
		if s.TrustDomain == td {
			return s
		}
	}
	return certs.BundleState{}
}

// serveBundleThrough makes owner serve its bundle over https_web with a
// certificate of a CA of the test, every 2 s by its refresh hint, and
// consumer fetch it through a proxy on owner's address that the test
// takes down and up.
func serveBundleThrough(t *testing.T, owner, consumer *mesh) *switchProxy {
	t.Helper()
	web := filepath.Join(filepath.Dir(owner.Dir), "web")
	require.NoError(t, certs.InitDevCA(certs.DevCAOptions{Dir: web, TrustDomain: spiffeid.RequireTrustDomainFromString("web.example")}))
	ca, err := certs.LoadCA(web)
	require.NoError(t, err)
	chain, key, err := ca.IssueTemplate(&x509.Certificate{
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(owner.IP)},
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(web, "web.pem"), chain, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(web, "web-key.pem"), key, 0o600))
	// On owner's address, where its agent's ports were picked and let go:
	// none of those.
	free := &freePorts{t: t, ip: owner.IP}
	taken := []string{owner.Federation, owner.Admin, owner.DNS}
	pick := func() string {
		for {
			if addr := free.addr(); !slices.Contains(taken, addr) {
				return addr
			}
		}
	}
	listen := pick()
	proxy := pick()
	free.release()
	owner.BundleEndpoint = fmt.Sprintf("{listen: '%s', profile: https_web, webCertificate: {cert: %s, key: %s}, refreshHint: 2s}",
		listen, filepath.Join(web, "web.pem"), filepath.Join(web, "web-key.pem"))
	consumer.PeerBundleEndpoint = fmt.Sprintf("{url: 'https://%s/bundle', profile: https_web, caFile: %s}", proxy, filepath.Join(web, certs.CACertFile))
	return startSwitchProxy(t, proxy, listen)
}

// switchProxy forwards TCP connections to a target while up; while down
// it closes each one at once, as a host whose service is down refuses it.
type switchProxy struct {
	target string
	up     atomic.Bool
	ln     net.Listener
	wg     sync.WaitGroup
}

func startSwitchProxy(t *testing.T, addr, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	p := &switchProxy{target: target, ln: ln}
	p.up.Store(true)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.up.Load() {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // a reset, as a refused connection
				}
				_ = c.Close()
				continue
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); p.wg.Wait() })
	return p
}

func (p *switchProxy) setUp(up bool) { p.up.Store(up) }

func (p *switchProxy) forward(c net.Conn) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		close(done)
	}()
	_, _ = io.Copy(c, up)
	_ = c.Close()
	<-done
}
