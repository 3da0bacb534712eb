package peer_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/model"
)

// twoMeshes: mesh-b listens, mesh-a dials it; each exports to the other.
func twoMeshes(t *testing.T, cfgA, cfgB func(*peer.Config)) (a, b *agent) {
	p := newPKI(t, "mesh-a", "mesh-b")
	b = newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, cfgB)
	a = newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), b.addr)}, cfgA)
	return a, b
}

func TestFullCatalogOnConnectBothWays(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
	b.export([]string{"payments", "ledger", "fraud"}, "mesh-a")
	a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), b.addr)}, nil)
	a.export([]string{"inventory", "shipping"}, "mesh-b")

	a.eventuallyImports("mesh-b", "payments", "ledger", "fraud")
	b.eventuallyImports("mesh-a", "inventory", "shipping")

	imp, ok := a.catalog.Import("mesh-b", "payments")
	require.True(t, ok)
	assert.Equal(t, "payments.mesh-b.example", imp.LocalFQDN)
	assert.Equal(t, []string{"spiffe://mesh-b.example/meshfed/gateway/ingress"}, imp.Service.SANs)
	assert.Equal(t, "outbound_.8080_._.payments.mesh-b.example", imp.Service.Instances[0].SNI)
	assert.Equal(t, peer.Connected, a.status("mesh-b").State)
	assert.Equal(t, "spiffe://mesh-b.example/meshfed/agent", a.status("mesh-b").Identity)
	assert.Equal(t, 3, a.status("mesh-b").Imported)
	assert.Equal(t, 2, a.status("mesh-b").Exported)
}

func TestUpsertAndDeletePropagateBothWays(t *testing.T) {
	a, b := twoMeshes(t, nil, nil)
	a.export([]string{"inventory"}, "mesh-b")
	b.export([]string{"payments"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments")
	b.eventuallyImports("mesh-a", "inventory")

	b.export([]string{"payments", "ledger"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments", "ledger")
	a.export(nil)
	b.eventuallyImports("mesh-a")

	// An update replaces the whole service.
	e := export("ledger", "mesh-b.example", "mesh-a")
	e.Ports[0].Port = 9090
	b.catalog.SetExports([]model.Export{export("payments", "mesh-b.example", "mesh-a"), e})
	require.Eventually(t, func() bool {
		imp, ok := a.catalog.Import("mesh-b", "ledger")
		return ok && imp.Service.Instances[0].Port == 9090
	}, 10*time.Second, 10*time.Millisecond)

	// An export withdrawn from one consumer is deleted there.
	b.catalog.SetExports([]model.Export{export("payments", "mesh-b.example", "mesh-a"), export("ledger", "mesh-b.example")})
	a.eventuallyImports("mesh-b", "payments")
}

func TestNackKeepsPreviousVersionAndOwnerSeesReason(t *testing.T) {
	a, b := twoMeshes(t, nil, nil)
	b.export([]string{"payments"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments")

	// mesh-a exports a service under the fqdn it already imports: the
	// consumer must refuse an fqdn that collides with its own export.
	a.catalog.SetExports([]model.Export{{Name: "local-payments", FQDN: "ledger.mesh-b.example", Mode: model.Terminate,
		Ports: []model.ExportPort{{Name: "http", Port: 80, Protocol: model.HTTP}}}})
	b.export([]string{"payments", "ledger"}, "mesh-a")
	require.Eventually(t, func() bool {
		d, ok := b.catalog.Deliveries("mesh-a")["ledger"]
		return ok && d.Code == codes.AlreadyExists
	}, 10*time.Second, 10*time.Millisecond)
	d := b.catalog.Deliveries("mesh-a")["ledger"]
	assert.False(t, d.Acked)
	assert.Contains(t, d.Message, `fqdn: "ledger.mesh-b.example" is already a local export ("local-payments")`)
	assert.True(t, b.catalog.Deliveries("mesh-a")["payments"].Acked)
	assert.Equal(t, 1.0, b.counter("meshfed_hamlet_answers_received_total", map[string]string{"peer": "mesh-a", "code": "AlreadyExists"}))
	assert.Equal(t, 1.0, a.counter("meshfed_hamlet_responses_received_total", map[string]string{"peer": "mesh-b", "operation": "UPSERT", "code": "AlreadyExists"}))
	// The rest of the peer's catalog keeps working.
	a.eventuallyImports("mesh-b", "payments")
}

func TestRestartAndReconnectLoseNothing(t *testing.T) {
	a, b := twoMeshes(t, nil, nil)
	a.export([]string{"inventory"}, "mesh-b")
	b.export([]string{"payments", "ledger"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments", "ledger")
	b.eventuallyImports("mesh-a", "inventory")

	b.stop()
	// The consumer keeps what it had, marked stale with the time.
	require.Eventually(t, func() bool {
		imp, _ := a.catalog.Import("mesh-b", "payments")
		return !imp.StaleSince.IsZero()
	}, 10*time.Second, 10*time.Millisecond)
	a.eventuallyImports("mesh-b", "payments", "ledger")
	assert.NotEqual(t, peer.Connected, a.status("mesh-b").State)

	b.restart()
	// The restarted server restored its imports from its store.
	assert.ElementsMatch(t, []string{"inventory"}, b.importedIDs("mesh-a"))
	b.export([]string{"payments", "ledger"}, "mesh-a")
	require.Eventually(t, func() bool {
		imp, ok := a.catalog.Import("mesh-b", "payments")
		return ok && imp.StaleSince.IsZero() && a.status("mesh-b").State == peer.Connected
	}, 10*time.Second, 10*time.Millisecond)
	a.eventuallyImports("mesh-b", "payments", "ledger")
	assert.GreaterOrEqual(t, a.status("mesh-b").Reconnects, 1)
}

func TestConsumerRestartRestoresImportsFromStore(t *testing.T) {
	a, b := twoMeshes(t, nil, nil)
	b.export([]string{"payments", "ledger"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments", "ledger")
	b.stop()
	a.restart()
	// Nothing to talk to, yet everything is there, as stale as before.
	assert.ElementsMatch(t, []string{"payments", "ledger"}, a.importedIDs("mesh-b"))
	imp, _ := a.catalog.Import("mesh-b", "payments")
	assert.False(t, imp.StaleSince.IsZero())
}

func TestDeletionReconciledAfterResyncWithSyncComplete(t *testing.T) {
	// A grace period far longer than the test shows the deletion comes from
	// the sync-complete marker.
	long := func(c *peer.Config) { c.Grace = time.Hour }
	a, b := twoMeshes(t, long, long)
	b.export([]string{"payments", "ledger"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments", "ledger")
	b.stop()
	b.restart()
	// The restarted owner no longer has ledger: a DELETE was never sent,
	// the full catalog after the reconnect tells.
	b.export([]string{"payments"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments")
}

func TestDeletionReconciledAfterGraceWithoutExtension(t *testing.T) {
	short := func(c *peer.Config) { c.Grace = 300 * time.Millisecond; c.DisableExtensions = true }
	a, b := twoMeshes(t, short, short)
	b.export([]string{"payments", "ledger"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments", "ledger")
	b.stop()
	b.restart()
	b.export([]string{"payments"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments")
}

func TestStaleImportsExpireAfterRetention(t *testing.T) {
	a, b := twoMeshes(t, func(c *peer.Config) { c.Retention = 200 * time.Millisecond }, nil)
	b.export([]string{"payments"}, "mesh-a")
	a.eventuallyImports("mesh-b", "payments")
	b.stop()
	a.eventuallyImports("mesh-b")
}

func TestThreeMeshes(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b", "mesh-c")
	a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), ""), spec("mesh-c", p.td("mesh-c"), "")}, nil)
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), a.addr)}, nil)
	c := newAgent(t, "mesh-c", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), a.addr)}, nil)
	a.export([]string{"shared", "only-b"}, "mesh-b")
	a.catalog.SetExports([]model.Export{export("shared", "mesh-a.example", "mesh-b", "mesh-c"), export("only-b", "mesh-a.example", "mesh-b")})
	b.export([]string{"payments"}, "mesh-a")
	c.export([]string{"search"}, "mesh-a")

	a.eventuallyImports("mesh-b", "payments")
	a.eventuallyImports("mesh-c", "search")
	b.eventuallyImports("mesh-a", "shared", "only-b")
	c.eventuallyImports("mesh-a", "shared")
}
