package consul

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sync/errgroup"

	"github.com/meshfed/meshfed/registry"
	"github.com/meshfed/meshfed/registry/consul/consultest"
	"github.com/meshfed/meshfed/snapshot"
)

// Each import registered with Connect on has a Connect proxy at the
// egress's Connect port, which /v1/health/connect finds; the proxy goes
// with the import, and an import of several instances has one.
func TestSinkRegistersAConnectProxyPerImport(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	s := newSink(t, Config{Address: a.HTTPAddr, Connect: &ConnectConfig{Port: 20443}})
	inventoryGRPC := inventoryHTTP
	inventoryGRPC.Instance, inventoryGRPC.Port = "grpc", 15002
	syncOK(t, s, inventoryHTTP, inventoryGRPC, ordersTCP)

	es, _, err := c.Health().Connect("inventory-mesh-b", "", true, nil)
	require.NoError(t, err)
	require.Len(t, es, 1, "one proxy for the import's two instances")
	require.Equal(t, api.ServiceKindConnectProxy, es[0].Service.Kind)
	require.Equal(t, "inventory-mesh-b-sidecar-proxy", es[0].Service.Service)
	require.Equal(t, "127.0.0.2", es[0].Service.Address)
	require.Equal(t, 20443, es[0].Service.Port)
	require.Len(t, instances(t, c, "inventory-mesh-b"), 2, "the import's own instances stay as they were")

	// A second sync changes nothing; the proxy goes with its import.
	syncOK(t, s, inventoryHTTP, inventoryGRPC, ordersTCP)
	syncOK(t, s, ordersTCP)
	es, _, err = c.Health().Connect("inventory-mesh-b", "", false, nil)
	require.NoError(t, err)
	require.Empty(t, es)
	es, _, err = c.Health().Connect("orders-mesh-c", "", true, nil)
	require.NoError(t, err)
	require.Len(t, es, 1)

	// Changes alone do the same: the proxy comes with the import's first
	// instance and goes with its last.
	ctx := context.Background()
	require.NoError(t, s.Apply(ctx, []registry.Imported{inventoryGRPC}, nil))
	es, _, err = c.Health().Connect("inventory-mesh-b", "", true, nil)
	require.NoError(t, err)
	require.Len(t, es, 1)
	require.NoError(t, s.Apply(ctx, []registry.Imported{inventoryHTTP}, nil))
	require.NoError(t, s.Apply(ctx, nil, []registry.Imported{inventoryGRPC}))
	es, _, err = c.Health().Connect("inventory-mesh-b", "", true, nil)
	require.NoError(t, err)
	require.Len(t, es, 1, "inventory keeps its proxy with one instance left")
	require.NoError(t, s.Apply(ctx, nil, []registry.Imported{inventoryHTTP}))
	es, _, err = c.Health().Connect("inventory-mesh-b", "", false, nil)
	require.NoError(t, err)
	require.Empty(t, es)
}

func runConnect(t *testing.T, a *consultest.Agent) *Connect {
	t.Helper()
	return runConnectAt(t, a.HTTPAddr)
}

func runConnectAt(t *testing.T, addr string) *Connect {
	t.Helper()
	cfg := Config{Address: addr, Connect: &ConnectConfig{}}
	cfg.Default()
	cc, err := NewConnect(cfg, zaptest.NewLogger(t))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return cc
}

// material waits until Connect's material passes ok.
func material(t *testing.T, cc *Connect, what string, ok func(snapshot.ConsulSecrets) bool) snapshot.ConsulSecrets {
	t.Helper()
	var m snapshot.ConsulSecrets
	require.Eventually(t, func() bool { m = cc.Material(); return ok(m) }, time.Minute, 20*time.Millisecond, what)
	return m
}

// Connect holds Consul's trust domain and roots, the ingress identity's
// leaf and a leaf of every service asked for, each of its service; a
// service no longer asked for goes.
func TestConnectHoldsRootsAndLeaves(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	cc := runConnect(t, a)
	cc.SetServices([]string{"web-mesh-b", "db-mesh-b"})
	m := material(t, cc, "roots and three leaves", func(m snapshot.ConsulSecrets) bool {
		return m.Roots != "" && m.Ingress != nil && len(m.Leaves) == 2
	})
	roots, _, err := c.Agent().ConnectCARoots(nil)
	require.NoError(t, err)
	require.Equal(t, roots.TrustDomain, m.TrustDomain)
	require.Equal(t, strings.TrimSpace(roots.Roots[0].RootCertPEM)+"\n", m.Roots)
	require.Equal(t, "spiffe://"+roots.TrustDomain+"/ns/default/dc/dc1/svc/web-mesh-b", leafURI(t, m.Leaves["web-mesh-b"]))
	require.Equal(t, "spiffe://"+roots.TrustDomain+"/ns/default/dc/dc1/svc/meshfed-ingress", leafURI(t, *m.Ingress))

	cc.SetServices([]string{"web-mesh-b"})
	require.Equal(t, []string{"web-mesh-b"}, keys(cc.Material().Leaves))
	dc, err := cc.Datacenter(context.Background())
	require.NoError(t, err)
	require.Equal(t, "dc1", dc)
}

// Leaves of many services and a burst of connection checks share a
// few connections to the agent: Consul refuses a client past 200, and
// every other local client of the agent would starve first.
func TestConnectBoundsItsConnections(t *testing.T) {
	a := consultest.Start(t)
	px := countConns(t, a.HTTPAddr)
	cc := runConnectAt(t, px.Addr())
	var names []string
	for i := range 60 {
		names = append(names, fmt.Sprintf("svc-%02d", i))
	}
	cc.SetServices(names)
	m := material(t, cc, "roots", func(m snapshot.ConsulSecrets) bool { return m.TrustDomain != "" })
	caller := "spiffe://" + m.TrustDomain + "/ns/default/dc/dc1/svc/bar"
	var g errgroup.Group
	for i := range 300 {
		g.Go(func() error {
			_, _, err := cc.Authorize(context.Background(), names[i%len(names)], caller, "01")
			return err
		})
	}
	require.NoError(t, g.Wait())
	material(t, cc, "60 leaves", func(m snapshot.ConsulSecrets) bool { return len(m.Leaves) == 60 })
	t.Logf("connections to consul: %d opened, at most %d at once", px.opened.Load(), px.most.Load())
	require.LessOrEqual(t, px.most.Load(), int64(connectConns), "connections open at once")
}

// The agent decides by Consul's intentions: allowed by default here (no
// ACLs), refused by a deny intention, with its reason.
func TestConnectAuthorize(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	cc := runConnect(t, a)
	m := material(t, cc, "roots", func(m snapshot.ConsulSecrets) bool { return m.TrustDomain != "" })
	bar := "spiffe://" + m.TrustDomain + "/ns/default/dc/dc1/svc/bar"
	ok, _, err := cc.Authorize(context.Background(), "web-mesh-b", bar, "01")
	require.NoError(t, err)
	require.True(t, ok)
	_, _, err = c.Connect().IntentionCreate(&api.Intention{SourceName: "bar", DestinationName: "web-mesh-b", Action: api.IntentionActionDeny}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ok, reason, err := cc.Authorize(context.Background(), "web-mesh-b", bar, "01")
		return err == nil && !ok && strings.Contains(reason, "DENY default/bar => default/web-mesh-b")
	}, 30*time.Second, 50*time.Millisecond)
}

// The callers of each name follow Consul's intentions: every service by
// default here (no ACLs) but those denied; only those allowed once a
// wildcard denies the rest.
func TestConnectCallersFollowIntentions(t *testing.T) {
	a := consultest.Start(t)
	c := a.Client(t, "")
	cc := runConnect(t, a)
	cc.UseDatacenter("dc1")
	cc.SetServices([]string{"web-mesh-b", "db-mesh-b"})
	material(t, cc, "everyone calls both", func(m snapshot.ConsulSecrets) bool {
		return equalCallers(m.Callers, map[string]snapshot.ConsulCallers{"web-mesh-b": {Allow: true}, "db-mesh-b": {Allow: true}})
	})
	for _, in := range []*api.Intention{
		{SourceName: "bar", DestinationName: "web-mesh-b", Action: api.IntentionActionDeny},
		{SourceName: "*", DestinationName: "db-mesh-b", Action: api.IntentionActionDeny},
		{SourceName: "api", DestinationName: "db-mesh-b", Action: api.IntentionActionAllow},
	} {
		_, _, err := c.Connect().IntentionCreate(in, nil)
		require.NoError(t, err)
	}
	material(t, cc, "the intentions' callers", func(m snapshot.ConsulSecrets) bool {
		return equalCallers(m.Callers, map[string]snapshot.ConsulCallers{
			"web-mesh-b": {Allow: true, Except: []string{"bar"}},
			"db-mesh-b":  {Allow: false, Except: []string{"api"}},
		})
	})
	cc.SetServices([]string{"db-mesh-b"})
	require.Equal(t, []string{"db-mesh-b"}, keys(cc.Material().Callers))
}

func equalCallers(a, b map[string]snapshot.ConsulCallers) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.Allow != w.Allow || strings.Join(v.Except, ",") != strings.Join(w.Except, ",") {
			return false
		}
	}
	return true
}

func leafURI(t *testing.T, s snapshot.SVID) string {
	t.Helper()
	b, _ := pem.Decode([]byte(s.CertChain))
	require.NotNil(t, b)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	require.Len(t, c.URIs, 1)
	return c.URIs[0].String()
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
