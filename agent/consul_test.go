package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/registry/consul/consultest"
)

// A Consul service tagged for export reaches the peer, and the peer
// registers it in its Consul catalog, where Consul DNS finds it.
func TestConsulExportToConsulImport(t *testing.T) {
	c := consultest.Start(t)
	client := c.Client(t, "")
	require.NoError(t, client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "billing-1", Name: "billing", Tags: []string{"meshfed-export"}, Address: "10.0.0.5", Port: 9000,
	}))

	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a := start(t, ma.config(t, mb, "", fmt.Sprintf(`consul:
  address: %s
  export: {tag: meshfed-export, domainSuffix: mesh-a.example, consumers: [mesh-b]}
`, c.HTTPAddr)))
	b := start(t, mb.config(t, ma, a.FederationAddr().String(), fmt.Sprintf(`consul:
  address: %s
  import: {}
`, c.HTTPAddr)))

	require.Eventually(t, func() bool {
		_, ok := b.Catalog.Import("mesh-a", "billing")
		return ok
	}, 30*time.Second, 50*time.Millisecond, "mesh-b never imported billing")
	imp, _ := b.Catalog.Import("mesh-a", "billing")
	require.Equal(t, "billing.mesh-a.example", imp.Service.FQDN)

	var entries []*api.CatalogService
	require.Eventually(t, func() bool {
		var err error
		entries, _, err = client.Catalog().Service("billing-mesh-a", "", nil)
		require.NoError(t, err)
		return len(entries) == 1
	}, 30*time.Second, 50*time.Millisecond, "billing-mesh-a never appeared in Consul")
	port, ok := b.Runner.EgressPort("mesh-a", "billing", entries[0].ServiceTags[0])
	require.True(t, ok, "tags: %v", entries[0].ServiceTags)
	require.Equal(t, "127.0.0.1", entries[0].ServiceAddress)
	require.Equal(t, int(port), entries[0].ServicePort)

	r, _, err := (&dns.Client{Net: "udp"}).Exchange(new(dns.Msg).SetQuestion("billing-mesh-a.service.consul.", dns.TypeSRV), c.DNSAddr)
	require.NoError(t, err)
	require.Len(t, r.Answer, 1)
	require.Equal(t, uint16(port), r.Answer[0].(*dns.SRV).Port)

	// The service leaving Consul is withdrawn from the peer and from the
	// peer's Consul catalog.
	require.NoError(t, client.Agent().ServiceDeregister("billing-1"))
	require.Eventually(t, func() bool {
		entries, _, err = client.Catalog().Service("billing-mesh-a", "", nil)
		require.NoError(t, err)
		return len(entries) == 0
	}, 30*time.Second, 50*time.Millisecond, "billing-mesh-a stayed in Consul")
	_, ok = b.Catalog.Import("mesh-a", "billing")
	require.False(t, ok)
}
