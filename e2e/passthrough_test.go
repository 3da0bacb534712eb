package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/model"
)

// A passthrough export is served by a backend that terminates the
// consumers' SPIFFE mutual TLS itself: the ingress gateway routes the
// stream by SNI without opening it, the consumer's egress gateway checks
// the backend's SPIFFE ID (advertised instead of the ingress gateway's),
// and the backend sees the consumer's egress gateway as its caller. A
// workload's own TLS travels inside, to the backend's TLS layer.
func TestPassthroughBackendTerminatesTheMTLS(t *testing.T) {
	var vaultTCP, vaultTLS, vaultMTLS, vaultHTTPS *upstream.TLSServer
	prepare := func(m *mesh) {
		if m.Name != "mesh-b" {
			return
		}
		svid := m.workloadSVID(t, "/ns/default/sa/vault")
		caller := spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(m.peer.TrustDomain()), "/meshfed/gateway/egress")
		outer := tlsconfig.MTLSServerConfig(svid, m.peer.bundle(t), tlsconfig.AuthorizeID(caller))
		var err error
		vaultTCP, err = upstream.TLSEcho("vault-tcp", "", outer)
		require.NoError(t, err)
		vaultTLS, err = upstream.TLSEcho("vault-tls", "", outer, tlsconfig.TLSServerConfig(svid))
		require.NoError(t, err)
		workloads := tlsconfig.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString(m.peer.TrustDomain()))
		vaultMTLS, err = upstream.TLSEcho("vault-mtls", "", outer, tlsconfig.MTLSServerConfig(svid, m.peer.bundle(t), workloads))
		require.NoError(t, err)
		vaultHTTPS, err = upstream.TLSHTTP("vault-https", "", outer, tlsconfig.TLSServerConfig(svid))
		require.NoError(t, err)
		t.Cleanup(func() {
			for _, s := range []*upstream.TLSServer{vaultTCP, vaultTLS, vaultMTLS, vaultHTTPS} {
				require.NoError(t, s.Close())
			}
		})
		m.ExtraServices = fmt.Sprintf(`  - name: vault
    fqdn: vault.mesh-b.example
    mode: passthrough
    backendSpiffeIds: [%s]
    consumers: [mesh-a]
    ports:
      - {name: tcp, port: 8200, protocol: TCP, endpoints: [{address: 127.0.0.1, port: %d}]}
      - {name: tls, port: 8201, protocol: TLS, endpoints: [{address: 127.0.0.1, port: %d}]}
      - {name: mtls, port: 8202, protocol: MTLS, endpoints: [{address: 127.0.0.1, port: %d}]}
      - {name: https, port: 8203, protocol: HTTPS, endpoints: [{address: 127.0.0.1, port: %d}]}
`, svid.ID, vaultTCP.Port(), vaultTLS.Port(), vaultMTLS.Port(), vaultHTTPS.Port())
	}
	a, b := federate(t, options{prepare: prepare})
	vault := spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(b.TrustDomain()), "/ns/default/sa/vault")
	var imp model.Import
	for _, i := range a.agent.Catalog.Imports() {
		if i.Service.Name == "vault" {
			imp = i
		}
	}
	require.Equal(t, []string{vault.String()}, imp.Service.SANs, "the backend's ID is advertised")
	addr := func(port string) string {
		p, ok := a.agent.Runner.EgressPort(b.Name, "vault", port)
		require.True(t, ok)
		return fmt.Sprintf("%s:%d", a.IP, p)
	}

	echoPlain(t, addr("tcp"))
	require.Equal(t, []upstream.Layer{{ServerName: model.DefaultSNI(8200, "vault.mesh-b.example"), Peer: "spiffe://mesh-a.example/meshfed/gateway/egress"}},
		vaultTCP.Connections()[0], "the backend terminated the egress gateway's mTLS")

	cfg := tlsconfig.TLSClientConfig(b.bundle(t), tlsconfig.AuthorizeID(vault))
	cfg.ServerName = "vault.mesh-b.example"
	echoOverTLS(t, addr("tls"), cfg)
	require.Equal(t, []upstream.Layer{
		{ServerName: model.DefaultSNI(8201, "vault.mesh-b.example"), Peer: "spiffe://mesh-a.example/meshfed/gateway/egress"},
		{ServerName: "vault.mesh-b.example"},
	}, vaultTLS.Connections()[0], "the workload's TLS inside the gateway's")

	client := a.workloadSVID(t, "/ns/default/sa/client")
	cfg = tlsconfig.MTLSClientConfig(client, b.bundle(t), tlsconfig.AuthorizeID(vault))
	cfg.ServerName = "vault.mesh-b.example"
	echoOverTLS(t, addr("mtls"), cfg)
	require.Equal(t, client.ID.String(), vaultMTLS.Connections()[0][1].Peer, "the workload's own certificate, inside")

	cfg = tlsconfig.TLSClientConfig(b.bundle(t), tlsconfig.AuthorizeID(vault))
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig: cfg,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr("https"))
		},
	}}
	resp, err := c.Get("https://vault.mesh-b.example:8203/secret")
	require.NoError(t, err)
	defer resp.Body.Close()
	var r upstream.Reply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	require.Equal(t, "vault-https", r.Service)
	require.Equal(t, "/secret", r.Path)
}
