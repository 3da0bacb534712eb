package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/e2e/upstream"
)

// A workload that speaks TLS itself reaches a TLS server of the other mesh:
// its session is tunnelled inside the egress gateway's mutual TLS, which
// the owner's ingress terminates, and arrives at the server untouched (the
// server sees the workload's own SNI and, for MTLS, its own certificate).
func TestTLSFamilyCrossesInMTLS(t *testing.T) {
	a, b := federate(t, options{tlsFamily: true})
	for _, m := range []*mesh{a, b} {
		t.Run(m.Name+"->"+m.peer.Name, func(t *testing.T) {
			owner := m.peer
			t.Run("tls", func(t *testing.T) {
				cfg := tlsconfig.TLSClientConfig(owner.bundle(t), tlsconfig.AuthorizeID(owner.serviceID()))
				cfg.ServerName = owner.FQDN()
				echoOverTLS(t, m.importedAddr(t, "tls"), cfg)
				require.Contains(t, owner.up.tls.ServerNames(), owner.FQDN(), "the server saw the workload's SNI")
			})
			t.Run("mtls", func(t *testing.T) {
				client := m.workloadSVID(t, "/ns/default/sa/client")
				cfg := tlsconfig.MTLSClientConfig(client, owner.bundle(t), tlsconfig.AuthorizeID(owner.serviceID()))
				cfg.ServerName = owner.FQDN()
				echoOverTLS(t, m.importedAddr(t, "mtls"), cfg)
				require.Contains(t, owner.up.mtls.Peers(), client.ID.String(), "the server saw the workload's own certificate")
			})
			t.Run("https", func(t *testing.T) {
				cfg := tlsconfig.TLSClientConfig(owner.bundle(t), tlsconfig.AuthorizeID(owner.serviceID()))
				c := &http.Client{Transport: &http.Transport{
					TLSClientConfig: cfg,
					DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
						return (&net.Dialer{}).DialContext(ctx, network, m.importedAddr(t, "https"))
					},
				}}
				resp, err := c.Get("https://" + owner.FQDN() + ":" + strconv.Itoa(httpsPort) + "/over-https")
				require.NoError(t, err)
				defer resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode)
				var r upstream.Reply
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
				require.Equal(t, owner.Service+"-https", r.Service)
				require.Equal(t, "/over-https", r.Path)
			})
		})
	}
}

func echoOverTLS(t *testing.T, addr string, cfg *tls.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	msg := "hello inside two TLS sessions"
	_, err = io.WriteString(conn, msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(conn, got)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

// startTLSUpstreams starts the servers behind the TLS, MTLS and HTTPS ports
// of m's service, each presenting the service's SVID; the MTLS one admits
// clients of the peer's mesh.
func (m *mesh) startTLSUpstreams() {
	t := m.t
	svid := m.workloadSVID(t, "/ns/default/sa/"+m.Service)
	var err error
	m.up.tls, err = upstream.TLSEcho(m.Service+"-tls", "", tlsconfig.TLSServerConfig(svid))
	require.NoError(t, err)
	m.up.mtls, err = upstream.TLSEcho(m.Service+"-mtls", "", tlsconfig.MTLSServerConfig(svid, m.peer.bundle(t), tlsconfig.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString(m.peer.TrustDomain()))))
	require.NoError(t, err)
	m.up.https, err = upstream.HTTPS(m.Service+"-https", "", tlsconfig.TLSServerConfig(svid))
	require.NoError(t, err)
	m.Upstreams.TLS, m.Upstreams.MTLS, m.Upstreams.HTTPS = m.up.tls.Port(), m.up.mtls.Port(), m.up.https.Port()
	t.Cleanup(func() {
		require.NoError(t, m.up.tls.Close())
		require.NoError(t, m.up.mtls.Close())
		require.NoError(t, m.up.https.Close())
	})
}

// serviceID is the SPIFFE ID of the servers of m's exported service.
func (m *mesh) serviceID() spiffeid.ID {
	return spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(m.TrustDomain()), "/ns/default/sa/"+m.Service)
}

// workloadSVID is a new SVID of m's CA for the given path.
func (m *mesh) workloadSVID(t *testing.T, path string) *x509svid.SVID {
	t.Helper()
	ca, err := certs.LoadCA(m.CertsDir())
	require.NoError(t, err)
	svid, err := ca.IssueX509SVID(spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(m.TrustDomain()), path), time.Hour)
	require.NoError(t, err)
	return svid
}

// bundle is m's trust bundle.
func (m *mesh) bundle(t *testing.T) *x509bundle.Bundle {
	t.Helper()
	b, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString(m.TrustDomain()), filepath.Join(m.CertsDir(), certs.BundleFile))
	require.NoError(t, err)
	return b
}

// importedAddr is the dedicated egress listener of the port of the
// service m's peer exports.
func (m *mesh) importedAddr(t *testing.T, port string) string {
	t.Helper()
	p, ok := m.agent.Runner.EgressPort(m.peer.Name, m.peer.Service, port)
	require.True(t, ok, "the %s import has an egress port", port)
	return net.JoinHostPort(m.IP, fmt.Sprint(p))
}
