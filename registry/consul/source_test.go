package consul

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry/consul/consultest"
)

func exportConfig(a *consultest.Agent, e ExportConfig) Config {
	return Config{Address: a.HTTPAddr, Export: &e}
}

// Acceptance: a Consul service tagged for export yields an Export.
func TestSourceExportsTaggedService(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	register(t, c, &api.AgentServiceRegistration{ID: "inventory-1", Name: "inventory", Address: "10.0.0.1", Port: 8080,
		Tags: []string{"meshfed-export"}, Meta: map[string]string{MetaProtocol: "http", MetaPortName: "http"}})
	register(t, c, &api.AgentServiceRegistration{ID: "inventory-2", Name: "inventory", Address: "10.0.0.2", Port: 8080,
		Tags: []string{"meshfed-export"}, Meta: map[string]string{MetaProtocol: "HTTP", MetaPortName: "http"}})
	register(t, c, &api.AgentServiceRegistration{ID: "billing-1", Name: "billing", Address: "10.0.1.1", Port: 9000,
		Tags: []string{"meshfed-export"}, Meta: map[string]string{MetaConsumers: "mesh-c, mesh-d"}})
	register(t, c, &api.AgentServiceRegistration{ID: "db-1", Name: "db", Address: "10.0.2.1", Port: 5432})

	r := runSource(t, exportConfig(a, ExportConfig{Tag: "meshfed-export", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	set := r.until("billing and both inventory instances", func(s []model.Export) bool {
		return len(endpoints(s, "billing")) == 1 && len(endpoints(s, "inventory")) == 2
	})
	require.Equal(t, []model.Export{{
		Name: "billing", FQDN: "billing.mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-c", "mesh-d"},
		Ports: []model.ExportPort{{Name: "default", Port: 9000, Protocol: model.TCP, SNI: "outbound_.9000_._.billing.mesh-a.example",
			Endpoints: []model.LocalEndpoint{{Address: "10.0.1.1", Port: 9000}}}},
	}, {
		Name: "inventory", FQDN: "inventory.mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b"},
		Ports: []model.ExportPort{{Name: "http", Port: 8080, Protocol: model.HTTP, SNI: "outbound_.8080_._.inventory.mesh-a.example",
			Endpoints: []model.LocalEndpoint{{Address: "10.0.0.1", Port: 8080}, {Address: "10.0.0.2", Port: 8080}}}},
	}}, set)

	// A service tagged later is exported; one deregistered is withdrawn.
	register(t, c, &api.AgentServiceRegistration{ID: "orders-1", Name: "orders", Address: "10.0.3.1", Port: 7000, Tags: []string{"meshfed-export"}})
	r.until("orders", func(s []model.Export) bool { return len(endpoints(s, "orders")) == 1 })
	require.NoError(t, c.Agent().ServiceDeregister("billing-1"))
	set = r.until("billing gone", func(s []model.Export) bool { _, ok := find(s, "billing"); return !ok })
	require.Len(t, set, 2)
}

// Acceptance: an instance going critical updates the export's endpoints.
func TestSourceFollowsHealth(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	for id, addr := range map[string]string{"inventory-1": "10.0.0.1", "inventory-2": "10.0.0.2"} {
		register(t, c, &api.AgentServiceRegistration{ID: id, Name: "inventory", Address: addr, Port: 8080,
			Tags: []string{"meshfed-export"}, Check: ttlCheck()})
	}
	r := runSource(t, exportConfig(a, ExportConfig{Tag: "meshfed-export", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	r.until("two endpoints", func(s []model.Export) bool { return len(endpoints(s, "inventory")) == 2 })

	require.NoError(t, c.Agent().UpdateTTL("service:inventory-1", "down", api.HealthCritical))
	set := r.until("one endpoint", func(s []model.Export) bool { return len(endpoints(s, "inventory")) == 1 })
	require.Equal(t, []string{"10.0.0.2"}, endpoints(set, "inventory"))

	// The last passing instance gone, the export is withdrawn (onEmpty delete).
	require.NoError(t, c.Agent().UpdateTTL("service:inventory-2", "down", api.HealthCritical))
	r.until("no inventory", func(s []model.Export) bool { return len(s) == 0 })

	require.NoError(t, c.Agent().UpdateTTL("service:inventory-1", "up", api.HealthPassing))
	set = r.until("inventory back", func(s []model.Export) bool { return len(endpoints(s, "inventory")) == 1 })
	require.Equal(t, []string{"10.0.0.1"}, endpoints(set, "inventory"))
}

// With onEmpty keep, a service without passing instances goes on being
// exported with its last endpoints.
func TestSourceOnEmptyKeep(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	register(t, c, &api.AgentServiceRegistration{ID: "inventory-1", Name: "inventory", Address: "10.0.0.1", Port: 8080,
		Tags: []string{"meshfed-export"}, Check: ttlCheck()})
	r := runSource(t, exportConfig(a, ExportConfig{Tag: "meshfed-export", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example", OnEmpty: OnEmptyKeep}))
	r.until("inventory", func(s []model.Export) bool { return len(endpoints(s, "inventory")) == 1 })

	reads := r.src.Status().Reads
	require.NoError(t, c.Agent().UpdateTTL("service:inventory-1", "down", api.HealthCritical))
	require.Eventually(t, func() bool { return r.src.Status().Reads > reads }, wait, 10*time.Millisecond, "inventory's health read")
	r.noUpdate()

	// Even gone from the catalog, it stays; a change elsewhere shows it.
	require.NoError(t, c.Agent().ServiceDeregister("inventory-1"))
	register(t, c, &api.AgentServiceRegistration{ID: "orders-1", Name: "orders", Address: "10.0.3.1", Port: 7000, Tags: []string{"meshfed-export"}})
	set := r.until("orders", func(s []model.Export) bool { return len(endpoints(s, "orders")) == 1 })
	require.Equal(t, []string{"10.0.0.1"}, endpoints(set, "inventory"))
}

func TestSourceSelectsByNameAndMeta(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	register(t, c, &api.AgentServiceRegistration{ID: "ledger-1", Name: "ledger", Address: "10.0.0.1", Port: 5432})
	register(t, c, &api.AgentServiceRegistration{ID: "orders-1", Name: "orders", Address: "10.0.1.1", Port: 7000,
		Meta: map[string]string{"meshfed-export": "true"}})
	// Only the instances selected are endpoints.
	register(t, c, &api.AgentServiceRegistration{ID: "orders-2", Name: "orders", Address: "10.0.1.2", Port: 7000})
	register(t, c, &api.AgentServiceRegistration{ID: "misc-1", Name: "misc", Address: "10.0.2.1", Port: 80,
		Meta: map[string]string{"meshfed-export": "false"}})
	// What the sink registered is never exported back.
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "meshfed-mesh-b", Address: "127.0.0.2",
		NodeMeta: map[string]string{metaManaged: "true"},
		Service: &api.AgentService{ID: "x:http", Service: "x-mesh-b", Port: 15001, Tags: []string{importTag},
			Meta: map[string]string{metaManaged: "true", "meshfed-export": "true"}}}, nil)
	require.NoError(t, err)

	r := runSource(t, exportConfig(a, ExportConfig{Services: []string{"ledger"}, Meta: "meshfed-export=true",
		Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	set := r.until("ledger and orders", func(s []model.Export) bool { return len(s) == 2 })
	require.Equal(t, []string{"10.0.0.1"}, endpoints(set, "ledger"))
	require.Equal(t, []string{"10.0.1.1"}, endpoints(set, "orders"))
}

func TestSourceLogsInvalidServices(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	register(t, c, &api.AgentServiceRegistration{ID: "ok-1", Name: "inventory", Address: "10.0.0.1", Port: 8080, Tags: []string{"x"}})
	register(t, c, &api.AgentServiceRegistration{ID: "bad-1", Name: "inventory", Address: "10.0.0.2", Port: 8080, Tags: []string{"x"},
		Meta: map[string]string{MetaProtocol: "FOO"}})
	register(t, c, &api.AgentServiceRegistration{ID: "Web_1", Name: "Web_App", Address: "10.0.0.3", Port: 80, Tags: []string{"x"}})
	r := runSource(t, exportConfig(a, ExportConfig{Tag: "x", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	set := r.until("inventory", func(s []model.Export) bool { return len(s) == 1 })
	require.Equal(t, []string{"10.0.0.1"}, endpoints(set, "inventory"))
	require.Equal(t, map[string]string{
		"inventory": `instance "bad-1": meshfed-protocol "FOO" is not one of HTTP HTTPS GRPC HTTP2 MONGO TCP TLS MTLS`,
		"Web_App":   `name: "Web_App" is not a DNS label (lowercase letters, digits and '-', at most 63)`,
	}, r.src.Status().Skipped)
}

// Consul gone while running: the last set stays, and the watch retries.
func TestSourceKeepsLastSetWhileConsulIsDown(t *testing.T) {
	a := consultest.Start(t)
	register(t, a.Client(t, ""), &api.AgentServiceRegistration{ID: "inventory-1", Name: "inventory", Address: "10.0.0.1", Port: 8080, Tags: []string{"x"}})
	r := runSource(t, exportConfig(a, ExportConfig{Tag: "x", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	r.until("inventory", func(s []model.Export) bool { return len(s) == 1 })
	a.Stop()
	require.Eventually(t, func() bool { return r.src.Status().Err != nil }, wait, 10*time.Millisecond, "a failed query")
	require.ErrorContains(t, r.src.Status().Err, "consul query catalog services: ")
	r.noUpdate()
}

func TestSourceFirstStateErrors(t *testing.T) {
	never := func([]model.Export) { t.Fatal("update") }
	// A port nothing listens on: the agent stopped at once.
	a := consultest.Start(t)
	a.Stop()
	src, err := NewSource(exportConfig(a, ExportConfig{Tag: "x", DomainSuffix: "mesh-a.example"}), zaptest.NewLogger(t))
	require.NoError(t, err)
	require.ErrorContains(t, src.Run(context.Background(), never), "consul: listing services: ")

	acl := consultest.StartACL(t, "0f7d4c1e-0000-4000-8000-00000000aaaa")
	const secret = "11111111-2222-4333-8444-555555555555"
	t.Setenv("CONSUL_HTTP_TOKEN", secret)
	src, err = NewSource(exportConfig(acl, ExportConfig{Tag: "x", DomainSuffix: "mesh-a.example"}), zaptest.NewLogger(t))
	require.NoError(t, err)
	err = src.Run(context.Background(), never)
	require.ErrorContains(t, err, "consul: listing services: Unexpected response code: 403 (ACL not found)")
	require.NotContains(t, err.Error(), secret)
}

// A registration changed in place (another address, the same tags, no
// check) changes neither the list of services nor a check: the sweep of
// every candidate sees it.
func TestSourceFollowsARegistrationChangedInPlace(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	register(t, c, &api.AgentServiceRegistration{ID: "inventory-1", Name: "inventory", Address: "10.0.0.1", Port: 8080, Tags: []string{"x"}})
	register(t, c, &api.AgentServiceRegistration{ID: "billing-1", Name: "billing", Address: "10.0.1.1", Port: 9000, Tags: []string{"x"}})
	r := runSource(t, exportConfig(a, ExportConfig{Tag: "x", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	r.until("both", func(s []model.Export) bool { return len(s) == 2 })

	register(t, c, &api.AgentServiceRegistration{ID: "inventory-1", Name: "inventory", Address: "10.0.0.9", Port: 8081, Tags: []string{"x"}})
	set := r.until("inventory moved", func(s []model.Export) bool { return slices.Equal(endpoints(s, "inventory"), []string{"10.0.0.9"}) })
	e, _ := find(set, "inventory")
	require.Equal(t, uint32(8081), e.Ports[0].Port)
	require.Equal(t, []string{"10.0.1.1"}, endpoints(set, "billing"))
}

// Thousands of reads may fail together: the status tells the first few
// and how many more.
func TestSourceStatusTellsAFewFailures(t *testing.T) {
	var s Source
	for _, q := range []string{"e", "d", "c", "b", "a"} {
		require.True(t, s.reporter(q)(errors.New(q+" failed")))
	}
	require.False(t, s.reporter("a")(errors.New("a failed")), "the same failure again is no news")
	require.EqualError(t, s.Status().Err, "a failed\nb failed\nc failed\nand 2 more queries failing")
	require.True(t, s.reporter("a")(nil))
	require.False(t, s.reporter("a")(nil))
	require.EqualError(t, s.Status().Err, "b failed\nc failed\nd failed\nand 1 more query failing")
	require.Equal(t, 5, s.Status().Reported)
}
