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

// registerMany registers n services named <prefix>0000.., each one
// instance with tag and a passing check, on 20 nodes other than the
// agent's (whose anti-entropy would remove them), 64 operations per
// transaction, Consul's bound. The operations are plain JSON: Consul 1.8
// refuses fields of the API client it does not know.
func registerMany(t *testing.T, c *api.Client, prefix string, n int, tag string) {
	t.Helper()
	type obj = map[string]any
	var ops []obj
	flush := func() {
		if len(ops) == 0 {
			return
		}
		var out obj
		_, err := c.Raw().Write("/v1/txn", ops, &out, nil)
		require.NoError(t, err)
		ops = nil
	}
	add := func(op obj) {
		if len(ops) == 64 {
			flush()
		}
		ops = append(ops, op)
	}
	for i := range n {
		node := fmt.Sprintf("node-%02d", i%20)
		if i < 20 {
			add(obj{"Node": obj{"Verb": "set", "Node": obj{"Node": node, "Address": fmt.Sprintf("10.1.%d.1", i)}}})
		}
		name := fmt.Sprintf("%s%04d", prefix, i)
		add(obj{"Service": obj{"Verb": "set", "Node": node,
			"Service": obj{"ID": name + "-1", "Service": name, "Port": 8080, "Tags": []string{tag}, "Meta": obj{MetaProtocol: "http"}}}})
		add(obj{"Check": obj{"Verb": "set",
			"Check": obj{"Node": node, "CheckID": "alive:" + name, "Name": "alive", "Status": api.HealthPassing, "ServiceID": name + "-1"}}})
	}
	flush()
}

// Acceptance: 2,000 exported services cost a few connections to Consul,
// and leave it answering others. One blocking query per service held 200
// connections (Consul's limit per client) and starved every other local
// client.
func TestSourceFollowsThousandsOfServicesOnAFewConnections(t *testing.T) {
	const n = 2000
	a := consultest.Start(t)
	c := a.Client(t, "")
	px := countConns(t, a.HTTPAddr)
	cfg := exportConfig(a, ExportConfig{Tag: "meshfed-export", Consumers: []string{"mesh-b"}, DomainSuffix: "mesh-a.example"})
	cfg.Address = px.Addr()
	r := runSource(t, cfg)
	r.until("the first, empty set", func(s []model.Export) bool { return len(s) == 0 })

	leader := pollLeader(a.HTTPAddr)
	start := time.Now()
	registerMany(t, c, "svc", n, "meshfed-export")
	registered := time.Since(start)
	set := r.until("every service", func(s []model.Export) bool { return len(s) == n })
	exported := time.Since(start)
	// A change of one service among them, through its check.
	_, err := c.Raw().Write("/v1/catalog/register", map[string]any{"Node": "node-07", "Address": "10.1.7.1", "SkipNodeUpdate": true,
		"Check": map[string]any{"Node": "node-07", "CheckID": "alive:svc1007", "Name": "alive", "Status": api.HealthCritical, "ServiceID": "svc1007-1"}}, nil, nil)
	require.NoError(t, err)
	flip := time.Now()
	r.until("svc1007 withdrawn", func(s []model.Export) bool { _, ok := find(s, "svc1007"); return !ok })
	withdrawn := time.Since(flip)
	leader.Stop()
	r.stop()
	require.Eventually(t, func() bool { return px.open.Load() == 0 }, wait, 10*time.Millisecond, "a source stopped holds no connection")

	e, ok := find(set, "svc1234")
	require.True(t, ok)
	require.Equal(t, model.Export{Name: "svc1234", FQDN: "svc1234.mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b"},
		Ports: []model.ExportPort{{Name: "default", Port: 8080, Protocol: model.HTTP, SNI: "outbound_.8080_._.svc1234.mesh-a.example",
			Endpoints: []model.LocalEndpoint{{Address: "10.1.14.1", Port: 8080}}}}}, e)
	t.Logf("%d services registered in %s, all exported %s after the registrations began; one check failing withdrew its service in %s; "+
		"connections to consul: %d opened, at most %d at once; the other client: %d answers, %d failures, slowest %s",
		n, registered.Round(time.Millisecond), exported.Round(time.Millisecond), withdrawn.Round(time.Millisecond),
		px.opened.Load(), px.most.Load(), leader.answered, leader.failed, leader.slowest.Round(time.Millisecond))
	require.LessOrEqual(t, px.opened.Load(), int64(10), "connections opened to consul")
	require.NoError(t, leader.firstErr, "the other client")
	require.NotZero(t, leader.answered)
}
