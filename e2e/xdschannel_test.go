package e2e

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// Gateways on another host reach their agent over mutual TLS: they present
// their SVID (from files), check the agent's SPIFFE ID, and are served the
// node ids their identity may use; one that asks for another role's node id
// is refused. Prometheus scrapes each gateway's stats without reaching its
// admin interface.
func TestGatewaysOverMutualTLS(t *testing.T) {
	a, _ := federate(t, options{xdsTLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := a.importedHTTP(ctx, "/over-mtls-xds")
	require.NoError(t, err)

	clients := a.agent.XDS.Clients()
	require.Len(t, clients, 2)
	for _, c := range clients {
		require.Equal(t, "mtls", c.Channel)
		require.Equal(t, "spiffe://mesh-a.example/meshfed/gateway/"+c.Role, c.SPIFFEID)
	}

	// The ingress gateway's SVID may not fetch the egress gateway's
	// configuration (and its private key).
	td := spiffeid.RequireTrustDomainFromString(a.TrustDomain())
	svid, err := x509svid.Load(filepath.Join(a.CertsDir(), "ingress.pem"), filepath.Join(a.CertsDir(), "ingress-key.pem"))
	require.NoError(t, err)
	creds := credentials.NewTLS(certs.ClientTLSConfig(svid, a.bundle(t), tlsconfig.AuthorizeID(spiffeid.RequireFromPath(td, "/meshfed/agent"))))
	conn, err := grpc.NewClient(a.XDS, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer conn.Close()
	err = adsclient.New(adsclient.Options{NodeID: "egress-gateway", Delta: true}).Run(ctx, conn, nil)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)

	for role, addr := range a.GatewayStats {
		resp, err := http.Get("http://" + addr + "/stats/prometheus")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, role)
		require.True(t, strings.Contains(string(body), "envoy_cluster_manager_cds_update_success"), "%s: prometheus text", role)

		resp, err = http.Get("http://" + addr + "/config_dump")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: only /stats/prometheus of the admin interface", role)
	}
}
