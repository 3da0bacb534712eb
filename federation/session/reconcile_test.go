package session_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/session"
)

// counter is the value of the counter name with exactly the given labels,
// 0 when it was never counted.
func (f *fixture) counter(name string, labels map[string]string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(f.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func (f *fixture) imported() []string {
	var out []string
	for _, imp := range f.cat.Imports() {
		if imp.Peer == "mesh-b" {
			out = append(out, imp.ResourceID)
		}
	}
	return out
}

func (f *fixture) reconciliations() float64 {
	return f.counter("meshfed_hamlet_reconciliations_total", map[string]string{"peer": "mesh-b"})
}

// negotiated waits until the session has read the peer's advertisement.
func (f *fixture) negotiated() session.Capabilities {
	f.t.Helper()
	var caps session.Capabilities
	require.Eventually(f.t, func() bool {
		var ok bool
		caps, ok = f.act.Negotiated()
		return ok
	}, 10*time.Second, time.Millisecond)
	return caps
}

func marker() *discoverypb.StreamResponse {
	return &discoverypb.StreamResponse{ResourceUrl: session.SyncCompleteURL}
}

var syncComplete = session.Capabilities{SyncComplete: true}

// With sync-complete negotiated, no amount of time deletes anything: only
// the peer's marker ends its catalog.
func TestSyncCompleteNegotiatedNeverArmsGrace(t *testing.T) {
	clk := session.NewFakeClock()
	f := newFixtureWith(t, fixtureOpts{local: syncComplete, remote: syncComplete, grace: time.Second, clock: clk,
		imports: []string{"payments", "ledger", "fraud"}})
	require.Equal(t, session.Capabilities{SyncComplete: true, Window: 1, ServicesPerResponse: 1}, f.negotiated())
	requireStatus(t, &spb.Status{}, f.send(upsert(t, "payments", good("payments"))))
	clk.Advance(time.Hour)
	requireStatus(t, &spb.Status{}, f.send(upsert(t, "ledger", good("ledger"))))
	clk.Advance(time.Hour)
	assert.Equal(t, 0, clk.Armed(), "the grace timer was armed")
	assert.Equal(t, 0.0, f.reconciliations())
	assert.ElementsMatch(t, []string{"payments", "ledger", "fraud"}, f.imported())

	requireStatus(t, &spb.Status{}, f.send(marker()))
	assert.ElementsMatch(t, []string{"payments", "ledger"}, f.imported(), "what the full catalog left out is gone")
	assert.Equal(t, 1.0, f.reconciliations())
}

// A marker from a peer that did not advertise sync-complete is no reason
// to delete anything: it is refused, counted, and nothing else happens.
func TestUnnegotiatedMarkerIsIgnoredAndCounted(t *testing.T) {
	for _, tc := range []struct {
		name          string
		local, remote session.Capabilities
	}{
		{"peer did not advertise it", syncComplete, session.Capabilities{}},
		{"this side did not advertise it", session.Capabilities{}, syncComplete},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureWith(t, fixtureOpts{local: tc.local, remote: tc.remote, imports: []string{"payments", "ledger"}})
			requireStatus(t, &spb.Status{}, f.send(upsert(t, "payments", good("payments"))))
			requireStatus(t, &spb.Status{Code: int32(codes.InvalidArgument),
				Message: `resource_url: "type.meshfed.io/meshfed.SyncComplete" is the sync-complete extension, which this stream did not negotiate; ignored`},
				f.send(marker()))
			assert.ElementsMatch(t, []string{"payments", "ledger"}, f.imported())
			assert.Equal(t, 0.0, f.reconciliations())
			assert.Equal(t, 1.0, f.counter("meshfed_hamlet_unnegotiated_extension_total", map[string]string{"peer": "mesh-b", "extension": "sync-complete"}))
			assert.Empty(t, f.cat.Rejections("mesh-b"), "a marker is no service of the peer's")
		})
	}
}

// Without sync-complete the grace period is quiet time: it counts from
// the peer's last response, so a catalog that takes longer than the grace
// period to arrive loses nothing.
func TestGraceCountsFromTheLastResponse(t *testing.T) {
	clk := session.NewFakeClock()
	grace := 10 * time.Second
	f := newFixtureWith(t, fixtureOpts{grace: grace, clock: clk, imports: []string{"payments", "ledger", "fraud", "gone"}})
	f.negotiated()
	for _, name := range []string{"payments", "ledger", "fraud"} {
		clk.Advance(grace - time.Millisecond)
		requireStatus(t, &spb.Status{}, f.send(upsert(t, name, good(name))))
	}
	assert.Equal(t, 0.0, f.reconciliations(), "reconciled while responses were still arriving")
	assert.ElementsMatch(t, []string{"payments", "ledger", "fraud", "gone"}, f.imported())

	// Quiet for the grace period: the catalog is complete.
	clk.Advance(grace)
	assert.Equal(t, 1.0, f.reconciliations())
	assert.ElementsMatch(t, []string{"payments", "ledger", "fraud"}, f.imported())
}

// A peer that waits for this side's answer before it sends more is not
// quiet: the grace period does not run while an answer is still to go out.
func TestGraceWaitsForThisSidesAnswers(t *testing.T) {
	clk := session.NewFakeClock()
	grace := 10 * time.Second
	f := newFixtureWith(t, fixtureOpts{grace: grace, clock: clk, imports: []string{"payments", "gone"}})
	f.negotiated()
	// More answers than the stream takes without being read: the answers
	// back up in this side.
	const n = 40
	for i := range n {
		f.nonce++
		r := upsert(t, "payments", good("payments"))
		r.Nonce = string(rune('a' + i))
		f.pipe.in <- &discoverypb.BidirectionalStream{Response: r}
	}
	clk.Advance(10 * grace)
	assert.Equal(t, 0.0, f.reconciliations(), "reconciled while answers were waiting to go out")
	for range n {
		<-f.pipe.out
	}
	require.Eventually(t, func() bool {
		clk.Advance(grace)
		return f.reconciliations() == 1
	}, 10*time.Second, time.Millisecond)
	assert.ElementsMatch(t, []string{"payments"}, f.imported())
}

// The NACKs this side sent stay on record per service until the peer
// sends something that is taken, deletes the service, or leaves it out of
// its full catalog.
func TestRejectionsStandUntilResolved(t *testing.T) {
	f := newFixtureWith(t, fixtureOpts{local: syncComplete, remote: syncComplete})
	bad := func(name string) *discoverypb.StreamResponse {
		fs := good(name)
		fs.Endpoints[0].Port = 0
		return upsert(t, name, fs)
	}
	rejections := func() map[string]string {
		out := map[string]string{}
		for _, r := range f.cat.Rejections("mesh-b") {
			out[r.ResourceID] = r.Code.String() + ": " + r.Message
		}
		return out
	}
	f.send(bad("ledger"))
	f.send(bad("fraud"))
	f.send(bad("stale"))
	assert.Equal(t, map[string]string{
		"fraud":  "InvalidArgument: endpoints[0].port: 0 is out of range 1-65535",
		"ledger": "InvalidArgument: endpoints[0].port: 0 is out of range 1-65535",
		"stale":  "InvalidArgument: endpoints[0].port: 0 is out of range 1-65535",
	}, rejections())

	requireStatus(t, &spb.Status{}, f.send(upsert(t, "ledger", good("ledger"))))
	requireStatus(t, &spb.Status{}, f.send(&discoverypb.StreamResponse{ResourceUrl: "", ResourceId: "fraud", Operation: discoverypb.StreamResponse_DELETE}))
	assert.Equal(t, map[string]string{"stale": "InvalidArgument: endpoints[0].port: 0 is out of range 1-65535"}, rejections())
}
