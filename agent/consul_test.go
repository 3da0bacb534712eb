package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
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

// The Consul catalog is kept in step with the imports though nothing is
// imported anew: what is deregistered by hand comes back, what meshfed
// registered and no longer imports goes, and a Consul that restarts empty
// gets every import again, without restarting the agent. While Consul is
// away the agent stays ready and says why it is degraded.
func TestConsulAntiEntropy(t *testing.T) {
	c := consultest.Start(t)
	client := c.Client(t, "")
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a := start(t, ma.config(t, mb, ""))
	a.Catalog.SetExports([]model.Export{inventory()})
	b := start(t, mb.config(t, ma, a.FederationAddr().String(), fmt.Sprintf(`consul:
  address: %s
  import: {antiEntropy: 1s}
`, c.HTTPAddr)))
	registered := func() int {
		entries, _, err := client.Catalog().Service("inventory-mesh-a", "", nil)
		if err != nil {
			return -1
		}
		return len(entries)
	}
	require.Eventually(t, func() bool { return registered() == 2 }, 30*time.Second, 50*time.Millisecond, "inventory-mesh-a never reached Consul")

	// Deregistered by hand: registered again.
	_, err := client.Catalog().Deregister(&api.CatalogDeregistration{Node: "meshfed-mesh-a", ServiceID: "inventory-mesh-a:db"}, nil)
	require.NoError(t, err)
	require.Equal(t, 1, registered())
	require.Eventually(t, func() bool { return registered() == 2 }, 30*time.Second, 50*time.Millisecond)

	// Registered as meshfed's but not imported: removed.
	_, err = client.Catalog().Register(&api.CatalogRegistration{Node: "meshfed-mesh-a", Address: "127.0.0.1",
		NodeMeta: map[string]string{"meshfed-managed": "true", "external-node": "true"},
		Service:  &api.AgentService{ID: "ledger-mesh-a:db", Service: "ledger-mesh-a", Port: 5432, Meta: map[string]string{"meshfed-managed": "true"}}}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		entries, _, err := client.Catalog().Service("ledger-mesh-a", "", nil)
		return err == nil && len(entries) == 0
	}, 30*time.Second, 50*time.Millisecond)

	// Consul goes away: still ready, degraded, with the reason.
	c.Stop()
	require.Eventually(t, func() bool { return len(b.Degraded()) == 1 }, 30*time.Second, 50*time.Millisecond)
	ready := httpGet(t, b.Agent, "/readyz")
	require.True(t, strings.HasPrefix(ready, "ok\ndegraded: consul: publishing the imports has failed since "), ready)
	require.Contains(t, ready, c.HTTPAddr)
	require.False(t, b.Sinks()[0].Healthy)

	// Consul comes back empty: the imports are registered again.
	c.Restart(t)
	require.Equal(t, 0, registered())
	require.Eventually(t, func() bool { return registered() == 2 }, 90*time.Second, 50*time.Millisecond, "imports never came back")
	require.Eventually(t, func() bool { return len(b.Degraded()) == 0 }, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, "ok", strings.TrimSpace(httpGet(t, b.Agent, "/readyz")))
	require.True(t, b.Sinks()[0].Healthy)
	require.Contains(t, httpGet(t, b.Agent, "/metrics"), `meshfed_registry_sink_up{sink="consul"} 1`)
}

// Consul unreachable as the source of the exports makes the agent
// degraded, not dead: it starts, says why in /readyz and the status, and
// takes the exports once Consul is back (restarted empty, then given the
// service), without a restart of its own.
func TestConsulSourceDownIsDegradedNotDead(t *testing.T) {
	c := consultest.Start(t)
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	c.Stop()
	a := start(t, ma.config(t, mb, "", fmt.Sprintf(`consul:
  address: %s
  export: {tag: meshfed-export, domainSuffix: mesh-a.example, consumers: [mesh-b]}
`, c.HTTPAddr)))

	require.Eventually(t, func() bool { return len(a.Degraded()) == 1 }, 30*time.Second, 50*time.Millisecond)
	ready := httpGet(t, a.Agent, "/readyz")
	require.True(t, strings.HasPrefix(ready, "ok\ndegraded: exports: reading the exports has failed since "), ready)
	require.Contains(t, ready, "consul: listing services: ")
	var s Status
	require.NoError(t, adminClient(a.Agent).Get(context.Background(), "/api/v1/status", &s))
	require.False(t, s.ExportSource.Healthy)
	require.Contains(t, s.ExportSource.LastError, c.HTTPAddr)

	c.Restart(t)
	client := c.Client(t, "")
	require.NoError(t, client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "billing-1", Name: "billing", Tags: []string{"meshfed-export"}, Address: "10.0.0.5", Port: 9000,
	}))
	require.Eventually(t, func() bool { return len(a.Catalog.Exports()) == 1 }, 90*time.Second, 50*time.Millisecond, "billing never exported")
	require.Empty(t, a.Degraded())
	require.Equal(t, "ok", strings.TrimSpace(httpGet(t, a.Agent, "/readyz")))
}
