package certs

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

func serverRefused(m *Metrics, reason string) func() bool {
	return func() bool { return counterValue(m.refused.WithLabelValues(SideServer, reason)) >= 1 }
}

// The bundle endpoint server logs each refused handshake through zap with
// its reason and the remote address, counts it by reason, and net/http's
// own "http: TLS handshake error" line never appears.
func TestBundleServerLogsAndCountsRefusedHandshakes(t *testing.T) {
	caB := newCA(t, tdB)
	m := newMetrics(t)
	core, logs := observer.New(zapcore.DebugLevel)
	url, _ := startBundleServerLog(t, BundleServerConfig{TrustDomain: tdB, Bundles: servedSet(t, caB.Bundle()),
		SVID: newSwitchSVID(t, caB, mustID(t, tdB, "/meshfed/agent")), Metrics: m}, zap.New(core))
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/bundle")

	// Plain HTTP gets net/http's answer, and is counted.
	resp, err := http.Get("http://" + addr + "/bundle")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "Client sent an HTTP request to an HTTPS server.\n", string(body))
	require.Eventually(t, serverRefused(m, ReasonPlaintextHTTP), waitTimeout, 10*time.Millisecond)

	// Another protocol.
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
	require.NoError(t, err)
	_, _ = bufio.NewReader(c).ReadByte() // until the server hangs up
	require.NoError(t, c.Close())
	require.Eventually(t, serverRefused(m, ReasonNotTLS), waitTimeout, 10*time.Millisecond)

	// A client that does not trust the server's certificate says so.
	other := x509.NewCertPool()
	other.AddCert(newCA(t, tdB).Certificate())
	_, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: other, ServerName: "b.example"})
	require.ErrorContains(t, err, "x509: certificate is not valid for any names, but wanted to match b.example")
	require.Eventually(t, serverRefused(m, ReasonRejectedByPeer), waitTimeout, 10*time.Millisecond)

	// A TCP health check: counted, logged at debug level only.
	c, err = net.Dial("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.Eventually(t, serverRefused(m, ReasonClosed), waitTimeout, 10*time.Millisecond)

	refused := logs.FilterMessage("bundle endpoint TLS handshake refused").All()
	require.Len(t, refused, 3)
	for i, want := range []string{ReasonPlaintextHTTP, ReasonNotTLS, ReasonRejectedByPeer} {
		f := refused[i].ContextMap()
		require.Equal(t, want, f["reason"])
		require.Equal(t, SideServer, f["side"])
		require.Equal(t, "b.example", f["trust_domain"])
		host, _, err := net.SplitHostPort(f["remote_addr"].(string))
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1", host)
		require.Equal(t, zapcore.WarnLevel, refused[i].Level)
	}
	require.Equal(t, 1, logs.FilterMessage("bundle endpoint TLS handshake ended early").Len())
	require.Zero(t, logs.FilterMessageSnippet("TLS handshake error").Len())
}

// The endpoint client counts and logs each handshake it refuses, with the
// reason from the failure's type.
func TestEndpointClientCountsRefusedHandshakes(t *testing.T) {
	caA, caB := newCA(t, tdA), newCA(t, tdB)
	endpointID := mustID(t, tdB, "/meshfed/agent")
	spiffeURL, _ := startBundleServer(t, BundleServerConfig{TrustDomain: tdB, Bundles: servedSet(t, caB.Bundle()), SVID: newSwitchSVID(t, caB, endpointID)})
	web, webCA := webCert(t)
	webURL, _ := startBundleServer(t, BundleServerConfig{TrustDomain: tdB, Bundles: servedSet(t, caB.Bundle()), Web: web})
	// A web certificate for a host name only: the URL's 127.0.0.1 is not in it.
	root := newCA(t, spiffeid.RequireTrustDomainFromString("web.example"))
	tmpl := leafTemplate()
	tmpl.DNSNames = []string{"bundles.b.example"}
	chain, key, err := root.IssueTemplate(tmpl)
	require.NoError(t, err)
	named, err := tls.X509KeyPair(chain, key)
	require.NoError(t, err)
	namedURL, _ := startBundleServer(t, BundleServerConfig{TrustDomain: tdB, Bundles: servedSet(t, caB.Bundle()), Web: staticCert{&named}})

	for _, tc := range []struct {
		name   string
		cfg    EndpointConfig
		reason string
	}{
		{"web, another CA", EndpointConfig{URL: webURL, Profile: ProfileHTTPSWeb, WebCAFile: writePEM(t, "ca.pem", caA.CertPEM())}, ReasonUnknownAuthority},
		{"web, another host", EndpointConfig{URL: namedURL, Profile: ProfileHTTPSWeb, WebCAFile: writePEM(t, "ca.pem", root.CertPEM())}, ReasonHostnameMismatch},
		{"spiffe, another ID", EndpointConfig{URL: spiffeURL, Profile: ProfileHTTPSSPIFFE, EndpointID: mustID(t, tdB, "/other"), BootstrapFile: writePEM(t, "b.pem", caB.CertPEM())}, ReasonUnexpectedID},
		{"spiffe, another CA", EndpointConfig{URL: spiffeURL, Profile: ProfileHTTPSSPIFFE, EndpointID: endpointID, BootstrapFile: writePEM(t, "b.pem", newCA(t, tdB).CertPEM())}, ReasonUnknownAuthority},
		{"spiffe, no bundle for the endpoint's trust domain", EndpointConfig{URL: spiffeURL, Profile: ProfileHTTPSSPIFFE, EndpointID: mustID(t, tdA, "/meshfed/agent")}, ReasonNoBundle},
		{"spiffe against a web certificate", EndpointConfig{URL: webURL, Profile: ProfileHTTPSSPIFFE, EndpointID: endpointID, BootstrapFile: writePEM(t, "b.pem", caB.CertPEM())}, ReasonNotSVID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMetrics(t)
			core, logs := observer.New(zapcore.WarnLevel)
			local := NewBundleSet(zap.New(core), m)
			defer local.Close()
			tc.cfg.TrustDomain, tc.cfg.MinRetry = tdB, 20*time.Millisecond
			require.NoError(t, local.AddEndpoint(tc.cfg))
			require.Eventually(t, func() bool {
				return counterValue(m.refused.WithLabelValues(SideClient, tc.reason)) >= 1
			}, waitTimeout, 10*time.Millisecond)
			e := logs.FilterMessage("bundle endpoint TLS handshake refused").All()[0].ContextMap()
			require.Equal(t, tc.reason, e["reason"])
			require.Equal(t, tc.cfg.URL, e["url"])
			require.Equal(t, strings.TrimSuffix(strings.TrimPrefix(tc.cfg.URL, "https://"), "/bundle"), e["remote_addr"])
		})
	}
	// The good configurations of the same servers load.
	local := NewBundleSet(zaptest.NewLogger(t), nil)
	defer local.Close()
	require.NoError(t, local.AddEndpoint(EndpointConfig{TrustDomain: tdB, URL: webURL, Profile: ProfileHTTPSWeb, WebCAFile: webCA}))
	require.Eventually(t, func() bool { return stateOf(t, local, tdB).Origin == OriginEndpoint }, waitTimeout, 10*time.Millisecond)
}
