package consul

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
	"github.com/meshfed/meshfed/registry/consul/consultest"
)

var (
	inventoryHTTP = registry.Imported{Peer: "mesh-b", Name: "inventory", FQDN: "inventory.mesh-b.example", LocalFQDN: "inventory.mesh-b.example",
		Instance: "http", Protocol: model.HTTP, Address: "127.0.0.2", Port: 15001}
	ledgerTLS = registry.Imported{Peer: "mesh-b", Name: "ledger", FQDN: "ledger.mesh-b.example", LocalFQDN: "ledger.mesh-b.example",
		Instance: "pg", Protocol: model.TLS, Address: "127.0.0.2", Port: 20001}
	ordersTCP = registry.Imported{Peer: "mesh-c", Name: "orders", FQDN: "orders.mesh-c.example", LocalFQDN: "orders.local",
		Instance: "tcp", Protocol: model.TCP, Address: "127.0.0.2", Port: 20002}
)

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	if cfg.Import == nil {
		cfg.Import = &ImportConfig{}
	}
	s, err := NewSink(cfg, zaptest.NewLogger(t))
	require.NoError(t, err)
	return s
}

func syncOK(t *testing.T, s *Sink, imports ...registry.Imported) {
	t.Helper()
	require.NoError(t, s.Sync(context.Background(), imports))
}

// instances lists the catalog's instances of a service.
func instances(t *testing.T, c *api.Client, name string) []*api.CatalogService {
	t.Helper()
	out, _, err := c.Catalog().Service(name, "", nil)
	require.NoError(t, err)
	return out
}

// nodeNames lists the catalog's nodes.
func nodeNames(t *testing.T, c *api.Client) []string {
	t.Helper()
	nodes, _, err := c.Catalog().Nodes(nil)
	require.NoError(t, err)
	var out []string
	for _, n := range nodes {
		out = append(out, n.Node)
	}
	slices.Sort(out)
	return out
}

// srv asks Consul's DNS interface over UDP for name's SRV records, and
// returns them with the A records of their targets.
func srv(t *testing.T, a *consultest.Agent, name string) ([]*dns.SRV, map[string]string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeSRV)
	in, _, err := (&dns.Client{Net: "udp", Timeout: 5 * time.Second}).Exchange(m, a.DNSAddr)
	require.NoError(t, err)
	var srvs []*dns.SRV
	for _, rr := range in.Answer {
		if s, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, s)
		}
	}
	addrs := map[string]string{}
	for _, rr := range in.Extra {
		if r, ok := rr.(*dns.A); ok {
			addrs[r.Hdr.Name] = r.A.String()
		}
	}
	return srvs, addrs
}

// Acceptance: an import appears in the catalog and in Consul DNS, and
// disappears when removed from the set.
func TestSinkRegistersInCatalogAndDNS(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	s := newSink(t, Config{Address: a.HTTPAddr})
	syncOK(t, s, inventoryHTTP, ledgerTLS, ordersTCP)

	got := instances(t, c, "inventory-mesh-b")
	require.Len(t, got, 1)
	i := got[0]
	require.Equal(t, "meshfed-mesh-b", i.Node)
	require.Equal(t, map[string]string{"external-node": "true", "meshfed-managed": "true"}, i.NodeMeta)
	require.Equal(t, "inventory-mesh-b:http", i.ServiceID)
	require.Equal(t, "127.0.0.2", i.ServiceAddress)
	require.Equal(t, 15001, i.ServicePort)
	require.Equal(t, []string{"http", "peer-mesh-b", "meshfed-imported"}, i.ServiceTags)
	require.Equal(t, map[string]string{
		"meshfed-managed": "true", "meshfed-peer": "mesh-b", "meshfed-name": "inventory", "meshfed-fqdn": "inventory.mesh-b.example",
		"meshfed-local-fqdn": "inventory.mesh-b.example", "meshfed-instance": "http", "meshfed-protocol": "HTTP",
	}, i.ServiceMeta)
	require.Len(t, instances(t, c, "orders-mesh-c"), 1)
	require.Equal(t, []string{"consultest", "meshfed-mesh-b", "meshfed-mesh-c"}, nodeNames(t, c))

	// Workloads find it by DNS: the egress gateway's address and port.
	records, addrs := srv(t, a, "inventory-mesh-b.service.consul")
	require.Len(t, records, 1)
	require.Equal(t, uint16(15001), records[0].Port)
	require.Equal(t, "127.0.0.2", addrs[records[0].Target])
	records, _ = srv(t, a, "pg.ledger-mesh-b.service.consul") // by instance tag
	require.Len(t, records, 1)
	require.Equal(t, uint16(20001), records[0].Port)

	// The same set again writes nothing.
	before := instances(t, c, "inventory-mesh-b")[0].ModifyIndex
	syncOK(t, s, ordersTCP, ledgerTLS, inventoryHTTP)
	require.Equal(t, before, instances(t, c, "inventory-mesh-b")[0].ModifyIndex)

	// A changed port is rewritten in place.
	moved := inventoryHTTP
	moved.Port = 15002
	syncOK(t, s, moved, ledgerTLS, ordersTCP)
	require.Equal(t, 15002, instances(t, c, "inventory-mesh-b")[0].ServicePort)

	// Removed from the set, gone from the catalog and DNS; a node left
	// without services goes too.
	syncOK(t, s, ledgerTLS)
	require.Empty(t, instances(t, c, "inventory-mesh-b"))
	require.Empty(t, instances(t, c, "orders-mesh-c"))
	records, _ = srv(t, a, "inventory-mesh-b.service.consul")
	require.Empty(t, records)
	require.Equal(t, []string{"consultest", "meshfed-mesh-b"}, nodeNames(t, c))

	syncOK(t, s)
	require.Equal(t, []string{"consultest"}, nodeNames(t, c))
}

// A change alone is written alone: what it adds, moves or removes, and a
// node left without services; the rest is not rewritten, and a Sync of the
// same set then writes nothing.
func TestSinkAppliesAChangeAlone(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	s := newSink(t, Config{Address: a.HTTPAddr})
	ctx := context.Background()
	require.ErrorContains(t, s.Apply(ctx, []registry.Imported{ordersTCP}, nil), "no complete sync yet")
	syncOK(t, s, inventoryHTTP, ledgerTLS)
	before := instances(t, c, "inventory-mesh-b")[0].ModifyIndex

	require.NoError(t, s.Apply(ctx, []registry.Imported{ordersTCP}, nil))
	require.Len(t, instances(t, c, "orders-mesh-c"), 1)
	require.Equal(t, []string{"consultest", "meshfed-mesh-b", "meshfed-mesh-c"}, nodeNames(t, c))
	require.Equal(t, before, instances(t, c, "inventory-mesh-b")[0].ModifyIndex, "the others are not rewritten")
	requireKnows(t, s)

	moved := inventoryHTTP
	moved.Port = 15002
	require.NoError(t, s.Apply(ctx, []registry.Imported{moved}, []registry.Imported{ledgerTLS}))
	require.Equal(t, 15002, instances(t, c, "inventory-mesh-b")[0].ServicePort)
	require.Empty(t, instances(t, c, "ledger-mesh-b"))
	require.Len(t, instances(t, c, "orders-mesh-c"), 1)
	requireKnows(t, s)

	require.NoError(t, s.Apply(ctx, nil, []registry.Imported{moved}))
	require.Equal(t, []string{"consultest", "meshfed-mesh-c"}, nodeNames(t, c), "a node left without services goes")
	requireKnows(t, s)

	after := instances(t, c, "orders-mesh-c")[0].ModifyIndex
	syncOK(t, s, ordersTCP)
	require.Equal(t, after, instances(t, c, "orders-mesh-c")[0].ModifyIndex, "the changes left what a Sync wants")
	require.NoError(t, s.Apply(ctx, nil, []registry.Imported{ordersTCP}))
	require.Equal(t, []string{"consultest"}, nodeNames(t, c))
}

// requireKnows checks that what the sink keeps of the catalog, which each
// Apply updates in place (and its index of it), is what Consul holds.
func requireKnows(t *testing.T, s *Sink) {
	t.Helper()
	held, err := s.current(context.Background())
	require.NoError(t, err)
	summary := func(m map[string]*node) map[string][]string {
		out := map[string][]string{}
		for name, n := range m {
			for id, svc := range n.services {
				out[name] = append(out[name], fmt.Sprintf("%s %s %s:%d", id, svc.Service, svc.Address, svc.Port))
			}
			slices.Sort(out[name])
		}
		return out
	}
	require.Equal(t, summary(held), summary(s.have))
	indexed := 0
	for _, ids := range s.nodeOf {
		indexed += len(ids)
	}
	services := 0
	for name, n := range s.have {
		for id, svc := range n.services {
			require.Equal(t, name, s.nodeOf[svc.Service][id], "index of %s", id)
			services++
		}
	}
	require.Equal(t, services, indexed)
}

// Acceptance: a new Sink, as after a restart, removes the leftovers of the
// last one and leaves alone what meshfed did not register.
func TestSinkReconcilesAfterRestart(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	syncOK(t, newSink(t, Config{Address: a.HTTPAddr}), inventoryHTTP, ledgerTLS, ordersTCP)

	// Someone else's service on a node of its own, and one put by hand on
	// meshfed's node.
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "legacy-host", Address: "10.9.9.9",
		Service: &api.AgentService{ID: "legacy", Service: "legacy", Port: 80}}, nil)
	require.NoError(t, err)
	_, err = c.Catalog().Register(&api.CatalogRegistration{Node: "meshfed-mesh-c", Address: "127.0.0.2", SkipNodeUpdate: true,
		Service: &api.AgentService{ID: "by-hand", Service: "by-hand", Port: 81}}, nil)
	require.NoError(t, err)

	restarted := newSink(t, Config{Address: a.HTTPAddr})
	syncOK(t, restarted, inventoryHTTP)
	require.Len(t, instances(t, c, "inventory-mesh-b"), 1)
	require.Empty(t, instances(t, c, "ledger-mesh-b"))
	require.Empty(t, instances(t, c, "orders-mesh-c"))
	require.Len(t, instances(t, c, "legacy"), 1)
	require.Len(t, instances(t, c, "by-hand"), 1)
	// meshfed-mesh-c stays for the service that is not meshfed's.
	require.Equal(t, []string{"consultest", "legacy-host", "meshfed-mesh-b", "meshfed-mesh-c"}, nodeNames(t, c))

	syncOK(t, restarted)
	require.Empty(t, instances(t, c, "inventory-mesh-b"))
	require.Len(t, instances(t, c, "by-hand"), 1)
	require.Equal(t, []string{"consultest", "legacy-host", "meshfed-mesh-c"}, nodeNames(t, c))
}

// A node of the sink's naming that meshfed did not register is not taken
// over: its peer's imports are refused with an error, the others go in.
func TestSinkLeavesForeignNodeAlone(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "meshfed-mesh-c", Address: "10.9.9.9",
		Service: &api.AgentService{ID: "mine", Service: "mine", Port: 80}}, nil)
	require.NoError(t, err)
	err = newSink(t, Config{Address: a.HTTPAddr}).Sync(context.Background(), []registry.Imported{inventoryHTTP, ordersTCP})
	require.EqualError(t, err, `consul: node "meshfed-mesh-c" exists and meshfed did not register it: its 1 imports are not registered`)
	require.Len(t, instances(t, c, "inventory-mesh-b"), 1)
	require.Empty(t, instances(t, c, "orders-mesh-c"))
	n, _, err := c.Catalog().Node("meshfed-mesh-c", nil)
	require.NoError(t, err)
	require.Equal(t, "10.9.9.9", n.Node.Address)
	require.Empty(t, n.Node.Meta)
}

// Imports that cannot be registered are left out without holding up the rest.
func TestSinkSkipsBadImports(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	s := newSink(t, Config{Address: a.HTTPAddr, Import: &ImportConfig{NameTemplate: "{name}"}})
	clash := inventoryHTTP
	clash.Peer = "mesh-c" // same name from another peer, and a template without {peer}
	spaced := ledgerTLS
	spaced.Name = "led ger"
	syncOK(t, s, inventoryHTTP, clash, spaced)
	got := instances(t, c, "inventory")
	require.Len(t, got, 1)
	require.Equal(t, "mesh-b", got[0].ServiceMeta["meshfed-peer"])
	require.Equal(t, []string{"consultest", "meshfed-mesh-b"}, nodeNames(t, c))
}

// Acceptance: a wrong ACL token gives a clear error and registers nothing.
func TestSinkACL(t *testing.T) {
	a := consultest.StartACL(t, "3c0ffee0-0000-4000-8000-000000000001")
	admin := a.Client(t, a.MasterToken)
	token := func(name, rules string) string {
		p, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
		require.NoError(t, err)
		tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: p.ID}}}, nil)
		require.NoError(t, err)
		return tok.SecretID
	}
	tokenFile := func(secret string) string {
		p := filepath.Join(t.TempDir(), "token")
		require.NoError(t, os.WriteFile(p, []byte(secret+"\n"), 0o600))
		return p
	}
	readOnly := token("read-only", `node_prefix "" { policy = "read" } service_prefix "" { policy = "read" }`)
	// May write inventory-mesh-b, not ledger-mesh-b: one transaction holds
	// both, so neither is written.
	partial := token("partial", `node_prefix "" { policy = "read" } node_prefix "meshfed-" { policy = "write" }
		service_prefix "" { policy = "read" } service "inventory-mesh-b" { policy = "write" }`)
	const unknown = "deadbeef-0000-4000-8000-0000000000ff"

	for _, tc := range []struct {
		name, secret, want string
	}{
		{"read only", readOnly, "consul: registering imports, transaction 1 of 1 (3 operations, first: set node meshfed-mesh-b): refused, nothing of it written: " +
			"set node meshfed-mesh-b: Permission denied"},
		{"partial", partial, "consul: registering imports, transaction 1 of 1 (3 operations, first: set node meshfed-mesh-b): refused, nothing of it written: " +
			"set service ledger-mesh-b:pg on node meshfed-mesh-b: Permission denied"},
		{"unknown", unknown, "consul: listing the nodes meshfed registered: Unexpected response code: 403 (ACL not found)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t, Config{Address: a.HTTPAddr, TokenFile: tokenFile(tc.secret)})
			err := s.Sync(context.Background(), []registry.Imported{inventoryHTTP, ledgerTLS})
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), tc.secret)
			require.Equal(t, []string{"consultest"}, nodeNames(t, admin))
			require.Empty(t, instances(t, admin, "inventory-mesh-b"))
		})
	}

	// The right token works.
	syncOK(t, newSink(t, Config{Address: a.HTTPAddr, TokenFile: tokenFile(a.MasterToken)}), inventoryHTTP, ledgerTLS)
	require.Len(t, instances(t, admin, "ledger-mesh-b"), 1)
}
