package consul

import (
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry/consul/consultest"
)

// sidecar registers a Connect proxy of instance id of service dest, as
// the agent registers a sidecar: its parent's tags and meta, and a check
// (a TTL here: no Envoy listens).
func sidecar(t *testing.T, c *api.Client, dest, id, addr string, port int, meta map[string]string) {
	t.Helper()
	register(t, c, &api.AgentServiceRegistration{Kind: api.ServiceKindConnectProxy, ID: id + "-sidecar-proxy", Name: dest + "-sidecar-proxy",
		Address: addr, Port: port, Tags: []string{"x"}, Meta: meta, Check: ttlCheck(),
		Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: dest, DestinationServiceID: id}})
}

func connectPort(name string, port uint32, proto model.Protocol, eps ...model.LocalEndpoint) model.ExportPort {
	return model.ExportPort{Name: "default", Port: port, Protocol: proto, SNI: model.DefaultSNI(port, name+".mesh-a.example"),
		Endpoints: eps, ConsulService: name}
}

// Acceptance: a service behind Connect sidecars, or Connect-native, is
// exported with the sidecars' (or its own) addresses, for the ingress to
// reach with Consul's mutual TLS; a sidecar is never exported as a service
// of its own, though it carries its service's tags and meta.
func TestSourceExportsConnectServices(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	http := map[string]string{MetaProtocol: "http"}
	register(t, c, &api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "10.0.0.1", Port: 8080, Tags: []string{"x"}, Meta: http})
	register(t, c, &api.AgentServiceRegistration{ID: "web-2", Name: "web", Address: "10.0.0.2", Port: 8080, Tags: []string{"x"}, Meta: http})
	sidecar(t, c, "web", "web-1", "10.0.0.1", 21000, http)
	sidecar(t, c, "web", "web-2", "10.0.0.2", 21001, http)
	register(t, c, &api.AgentServiceRegistration{ID: "pay-1", Name: "pay", Address: "10.0.1.1", Port: 9090, Tags: []string{"x"},
		Connect: &api.AgentServiceConnect{Native: true}})
	register(t, c, &api.AgentServiceRegistration{ID: "db-1", Name: "db", Address: "10.0.2.1", Port: 5432, Tags: []string{"x"}})
	// A proxy registered in the catalog may name its service only: it
	// fronts the service's instance on its node, at the node's address.
	for _, s := range []*api.AgentService{
		{ID: "ledger-1", Service: "ledger", Port: 7000, Tags: []string{"x"}},
		{ID: "ledger-proxy", Service: "ledger-proxy", Kind: api.ServiceKindConnectProxy, Port: 21100,
			Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "ledger"}},
	} {
		_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "n2", Address: "10.0.4.1", Service: s}, nil)
		require.NoError(t, err)
	}

	// Consul lists a terminating gateway among the Connect instances of
	// the services it fronts: they are plain services all the same.
	register(t, c, &api.AgentServiceRegistration{ID: "legacy-1", Name: "legacy", Address: "10.0.5.1", Port: 3306, Tags: []string{"x"}})
	register(t, c, &api.AgentServiceRegistration{ID: "tgw-1", Name: "tgw", Kind: api.ServiceKindTerminatingGateway, Address: "10.0.6.1", Port: 8443, Tags: []string{"x"}})
	_, err := c.Raw().Write("/v1/config", map[string]any{"Kind": "terminating-gateway", "Name": "tgw", "Services": []any{map[string]any{"Name": "legacy"}}}, nil, nil)
	require.NoError(t, err)
	gw, _, err := c.Health().Connect("legacy", "", false, nil)
	require.NoError(t, err)
	require.Len(t, gw, 1)

	r := runSource(t, exportConfig(a, ExportConfig{Tag: "x", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	set := r.until("web's two sidecars", func(s []model.Export) bool { return len(s) == 5 && len(endpoints(s, "web")) == 2 })
	export := func(name string, p model.ExportPort) model.Export {
		return model.Export{Name: name, FQDN: name + ".mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b"}, Ports: []model.ExportPort{p}}
	}
	require.Equal(t, []model.Export{
		export("db", model.ExportPort{Name: "default", Port: 5432, Protocol: model.TCP, SNI: "outbound_.5432_._.db.mesh-a.example",
			Endpoints: []model.LocalEndpoint{{Address: "10.0.2.1", Port: 5432}}}),
		export("ledger", connectPort("ledger", 7000, model.TCP, model.LocalEndpoint{Address: "10.0.4.1", Port: 21100})),
		export("legacy", model.ExportPort{Name: "default", Port: 3306, Protocol: model.TCP, SNI: "outbound_.3306_._.legacy.mesh-a.example",
			Endpoints: []model.LocalEndpoint{{Address: "10.0.5.1", Port: 3306}}}),
		export("pay", connectPort("pay", 9090, model.TCP, model.LocalEndpoint{Address: "10.0.1.1", Port: 9090})),
		export("web", connectPort("web", 8080, model.HTTP, model.LocalEndpoint{Address: "10.0.0.1", Port: 21000}, model.LocalEndpoint{Address: "10.0.0.2", Port: 21001})),
	}, set)
	require.Empty(t, r.src.Status().Skipped, "a sidecar or a gateway is no service of its own, nor a problem")

	// A failing sidecar takes its instance out; with none passing, the
	// service is withdrawn, never exported at its instances' own
	// addresses, which pass all the while.
	require.NoError(t, c.Agent().UpdateTTL("service:web-2-sidecar-proxy", "down", api.HealthCritical))
	set = r.until("one sidecar", func(s []model.Export) bool { return len(endpoints(s, "web")) == 1 })
	require.Equal(t, export("web", connectPort("web", 8080, model.HTTP, model.LocalEndpoint{Address: "10.0.0.1", Port: 21000})), set[4])
	require.NoError(t, c.Agent().UpdateTTL("service:web-1-sidecar-proxy", "down", api.HealthCritical))
	r.until("web withdrawn", func(s []model.Export) bool { _, ok := find(s, "web"); return !ok })
	require.NoError(t, c.Agent().UpdateTTL("service:web-1-sidecar-proxy", "up", api.HealthPassing))
	set = r.until("web back", func(s []model.Export) bool { return len(endpoints(s, "web")) == 1 })
	require.Equal(t, export("web", connectPort("web", 8080, model.HTTP, model.LocalEndpoint{Address: "10.0.0.1", Port: 21000})), set[4])

	// Named, or selected by the meta it carries from web, a sidecar is
	// still no service of its own.
	byName := runSource(t, exportConfig(a, ExportConfig{Services: []string{"web", "web-sidecar-proxy"}, Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	set = byName.until("web", func(s []model.Export) bool { return len(s) > 0 })
	require.Equal(t, []model.Export{export("web", connectPort("web", 8080, model.HTTP, model.LocalEndpoint{Address: "10.0.0.1", Port: 21000}))}, set)
	require.Empty(t, byName.src.Status().Skipped)
	byMeta := runSource(t, exportConfig(a, ExportConfig{Meta: MetaProtocol + "=http", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	set = byMeta.until("web", func(s []model.Export) bool { return len(s) > 0 })
	require.Equal(t, []model.Export{export("web", connectPort("web", 8080, model.HTTP, model.LocalEndpoint{Address: "10.0.0.1", Port: 21000}))}, set)

	// In mode passthrough the ingress would not originate Consul's mutual
	// TLS: a Connect service is left out, and says why.
	pass := runSource(t, exportConfig(a, ExportConfig{Services: []string{"web"}, Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example", Mode: "passthrough"}))
	set = pass.until("the first set", func([]model.Export) bool { return true })
	require.Empty(t, set)
	require.Equal(t, map[string]string{
		"web": `export.mode "passthrough": a Connect service is reached with Consul's mutual TLS, which the ingress originates in mode terminate only`,
	}, pass.src.Status().Skipped)
}
