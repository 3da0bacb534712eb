package consul

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry/consul/consultest"
)

// Acceptance: Consul restarted without its data (on the same address)
// comes back with lower indexes, and Consul 1.8 would hold a query on an
// old one for its whole wait. The source starts over: a service
// registered afterwards is exported, and its health followed.
func TestSourceStartsOverWhenConsulLosesItsData(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	register(t, c, &api.AgentServiceRegistration{ID: "inventory-1", Name: "inventory", Address: "10.0.0.1", Port: 8080, Tags: []string{"x"}})
	// Indexes well ahead of what the fresh agent reaches: a fresh dev
	// agent writes some 40 entries of its own.
	for i := range 100 {
		_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "pad", Address: "10.9.0.1",
			Service: &api.AgentService{ID: fmt.Sprintf("pad-%d", i), Service: fmt.Sprintf("pad-%d", i), Port: 80}}, nil)
		require.NoError(t, err)
	}
	r := runSource(t, exportConfig(a, ExportConfig{Tag: "x", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"}))
	r.until("inventory", func(s []model.Export) bool { return len(endpoints(s, "inventory")) == 1 })
	_, before, err := c.Catalog().Services(nil)
	require.NoError(t, err)

	a.Restart(t)
	register(t, c, &api.AgentServiceRegistration{ID: "orders-1", Name: "orders", Address: "10.0.3.1", Port: 7000, Tags: []string{"x"}, Check: ttlCheck()})
	registered := time.Now()
	_, after, err := c.Catalog().Services(nil)
	require.NoError(t, err)
	require.Less(t, after.LastIndex, before.LastIndex, "the fresh agent's index is behind: what this test is about")
	set := r.until("orders", func(s []model.Export) bool { return len(endpoints(s, "orders")) == 1 })
	exported := time.Since(registered)
	require.Equal(t, []string{"10.0.3.1"}, endpoints(set, "orders"))
	// The agent registered inventory again from its own state, as
	// agents do when the servers lost the catalog.
	require.Equal(t, []string{"10.0.0.1"}, endpoints(set, "inventory"))

	// The checks too are followed from the fresh agent's index.
	require.NoError(t, c.Agent().UpdateTTL("service:orders-1", "down", api.HealthCritical))
	flip := time.Now()
	r.until("orders withdrawn", func(s []model.Export) bool { _, ok := find(s, "orders"); return !ok })
	t.Logf("indexes %d before the restart, %d after; a service registered after the restart exported in %s, its check failing withdrew it in %s",
		before.LastIndex, after.LastIndex, exported.Round(time.Millisecond), time.Since(flip).Round(time.Millisecond))
}
