package agent

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/federation/peer"
)

func adminClient(a *Agent) *admin.Client {
	return &admin.Client{BaseURL: "http://" + a.AdminAddr().String()}
}

func TestAdminAPIAndDNSAfterAnExchange(t *testing.T) {
	a, b := exchanging(t)
	ctx := context.Background()

	// The import shows with the egress address and the allocated port.
	var imports []ImportView
	require.Eventually(t, func() bool {
		imports = nil
		require.NoError(t, adminClient(b.Agent).Get(ctx, "/api/v1/imports", &imports))
		return len(imports) == 1 && len(imports[0].Instances) == 2
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, "inventory.mesh-a.example", imports[0].LocalFQDN)
	require.Equal(t, "db", imports[0].Instances[0].Instance)
	require.Equal(t, uint32(21000), imports[0].Instances[0].Port)
	require.Equal(t, uint32(8080), imports[0].Instances[1].Port, "HTTP is served on the service's own port")

	// The owner sees the consumer's ACK, per service.
	var status Status
	require.Eventually(t, func() bool {
		status = Status{}
		require.NoError(t, adminClient(a.Agent).Get(ctx, "/api/v1/status", &status))
		return len(status.Peers) == 1 && len(status.Peers[0].Deliveries) == 1
	}, 20*time.Second, 20*time.Millisecond)
	require.True(t, status.Ready)
	require.Equal(t, peer.Connected, status.Peers[0].State)
	require.Equal(t, Delivery{Service: "inventory", Acked: true, At: status.Peers[0].Deliveries[0].At}, status.Peers[0].Deliveries[0])
	var exports []ExportView
	require.NoError(t, adminClient(a.Agent).Get(ctx, "/api/v1/exports", &exports))
	require.Len(t, exports, 1)
	require.True(t, exports[0].Deliveries["mesh-b"].Acked)

	// Probes and metrics.
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ok"} {
		body := httpGet(t, b.Agent, path)
		require.Equal(t, want, strings.TrimSpace(body), path)
	}
	metrics := httpGet(t, b.Agent, "/metrics")
	for _, m := range []string{"meshfed_hamlet_", "meshfed_snapshot_build_duration_seconds", "meshfed_peer",
		`meshfed_certificate_expiry_timestamp_seconds{role="ingress",trust_domain="mesh-b.example"}`,
		`meshfed_certificate_expiry_timestamp_seconds{role="bundle",trust_domain="mesh-a.example"}`} {
		require.Contains(t, metrics, m)
	}
	require.NotContains(t, httpGet(t, b.Agent, "/api/v1/status"), "PRIVATE KEY")

	// DNS: the imported name answers with the egress gateway, SRV with the
	// port of each instance, and anything else is NXDOMAIN.
	c := &dns.Client{Net: "udp"}
	q := new(dns.Msg).SetQuestion("inventory.mesh-a.example.", dns.TypeA)
	var r *dns.Msg
	require.Eventually(t, func() bool {
		var err error
		r, _, err = c.Exchange(q, b.DNSAddr().String())
		require.NoError(t, err)
		return len(r.Answer) == 1
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, "127.0.0.1", r.Answer[0].(*dns.A).A.String())
	r, _, err := c.Exchange(new(dns.Msg).SetQuestion("_db._tcp.inventory.mesh-a.example.", dns.TypeSRV), b.DNSAddr().String())
	require.NoError(t, err)
	require.Len(t, r.Answer, 1)
	require.Equal(t, uint16(21000), r.Answer[0].(*dns.SRV).Port)
	r, _, err = c.Exchange(new(dns.Msg).SetQuestion("payments.mesh-a.example.", dns.TypeA), b.DNSAddr().String())
	require.NoError(t, err)
	require.Equal(t, dns.RcodeNameError, r.Rcode)
}

func httpGet(t *testing.T, a *Agent, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + a.AdminAddr().String() + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, path)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

const registryFile = `services:
  - name: inventory
    fqdn: inventory.mesh-a.example
    consumers: [mesh-b]
    ports:
      - name: http
        port: 8080
        protocol: HTTP
        endpoints: [{address: 127.0.0.1, port: 9080}]
`

const secondService = `  - name: ledger
    fqdn: ledger.mesh-a.example
    mode: passthrough
    backendSpiffeIds: [spiffe://mesh-a.example/ns/db/sa/ledger]
    consumers: [mesh-b]
    ports:
      - name: postgres
        port: 5432
        protocol: TLS
        endpoints: [{address: 127.0.0.1, port: 9432}]
`

func TestExportsFollowTheRegistryFile(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	path := filepath.Join(ma.dir, "services.yaml")
	require.NoError(t, os.WriteFile(path, []byte(registryFile), 0o600))
	ca := ma.config(t, mb, "")
	ca.Exports.File = path
	a := start(t, ca)
	b := start(t, mb.config(t, ma, a.FederationAddr().String()))
	require.Eventually(t, func() bool { return len(b.Catalog.Imports()) == 1 }, 20*time.Second, 20*time.Millisecond)

	// An edit adds a service, which reaches the peer.
	require.NoError(t, os.WriteFile(path, []byte(registryFile+secondService), 0o600))
	require.Eventually(t, func() bool { return len(b.Catalog.Imports()) == 2 }, 20*time.Second, 20*time.Millisecond)
}
