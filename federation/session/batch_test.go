package session_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/session"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/store"
)

// gateStore is the real store, counting the import transactions. Once
// armed, the next transaction says so on entered and waits for release
// before it runs; while fail is set, transactions fail without writing.
type gateStore struct {
	*store.Store
	entered, release chan struct{}

	mu     sync.Mutex
	writes int
	// sizes are the services of each transaction, in order.
	sizes []int
	armed bool
	fail  bool
}

func newGateStore() *gateStore {
	return &gateStore{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateStore) wrap(st *store.Store) catalog.Store { g.Store = st; return g }

func (g *gateStore) WriteImports(ws []store.ImportWrite) error {
	g.mu.Lock()
	g.writes++
	g.sizes = append(g.sizes, len(ws))
	armed, fail := g.armed, g.fail
	g.armed = false
	g.mu.Unlock()
	if armed {
		g.entered <- struct{}{}
		<-g.release
	}
	if fail {
		return errors.New("disk full")
	}
	return g.Store.WriteImports(ws)
}

func (g *gateStore) set(armed, fail bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed, g.fail = armed, fail
}

func (g *gateStore) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writes
}

// sizesSince are the services of each transaction after the first n.
func (g *gateStore) sizesSince(n int) []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.sizes[n:]...)
}

// push sends r as the peer without waiting for the answer.
func (f *fixture) push(r *discoverypb.StreamResponse) {
	f.nonce++
	r.Nonce = fmt.Sprint(f.nonce)
	f.pipe.in <- &discoverypb.BidirectionalStream{Response: r}
}

// received returns once the session has queued every response pushed so
// far: the session takes a frame off the pipe only after it has queued
// the one before, and a repeated opening request is one it ignores.
func (f *fixture) received() {
	f.pipe.in <- &discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{ResourceUrl: wire.TypeURL}}
}

// answers returns the session's next n answers, in the order it sent them.
func (f *fixture) answers(n int) []*discoverypb.StreamRequest {
	f.t.Helper()
	var out []*discoverypb.StreamRequest
	for len(out) < n {
		select {
		case m := <-f.pipe.out:
			if req := m.GetRequest(); req != nil {
				out = append(out, req)
			}
		case <-time.After(10 * time.Second):
			f.t.Fatalf("%d answers of %d", len(out), n)
		}
	}
	return out
}

// noAnswerYet checks that the session has answered nothing so far.
func (f *fixture) noAnswerYet() {
	f.t.Helper()
	for {
		select {
		case m := <-f.pipe.out:
			require.Nil(f.t, m.GetRequest(), "an answer went out before its response was stored")
		default:
			return
		}
	}
}

// pushDuringATransaction pushes rs while the transaction of the first is
// held on its way, checks that nothing is answered until it returns, and
// returns the answers to rs, which come in the order of rs.
func (f *fixture) pushDuringATransaction(g *gateStore, fail bool, rs []*discoverypb.StreamResponse) []*discoverypb.StreamRequest {
	f.t.Helper()
	g.set(true, fail)
	f.push(rs[0])
	<-g.entered
	for _, r := range rs[1:] {
		f.push(r)
	}
	f.received()
	f.noAnswerYet()
	g.release <- struct{}{}

	answers := f.answers(len(rs))
	for i, a := range answers {
		require.Equal(f.t, rs[i].Nonce, a.GetResponseNonce(), "answers in the order of the responses")
	}
	return answers
}

// storedMeshB is mesh-b's imports as stored: resource id → description.
func storedMeshB(t *testing.T, st *store.Store) map[string]string {
	t.Helper()
	recs, err := st.PeerImports("mesh-b")
	require.NoError(t, err)
	out := map[string]string{}
	for _, r := range recs {
		out[r.ResourceID] = string(r.Service)
	}
	return out
}

// TestResponsesThatArriveTogetherShareATransaction: the responses that
// arrive while a transaction is on its way are stored together in the
// next one, in order (the last write of a key wins), and answered in
// order once it is durable.
func TestResponsesThatArriveTogetherShareATransaction(t *testing.T) {
	g := newGateStore()
	f := newFixtureWith(t, fixtureOpts{wrap: g.wrap})
	const n = 100
	var rs []*discoverypb.StreamResponse
	for i := range n - 5 {
		rs = append(rs, upsert(t, fmt.Sprintf("svc-%d", i), good(fmt.Sprintf("svc-%d", i))))
	}
	changed := func(name, desc string) *discoverypb.StreamResponse {
		fs := good(name)
		fs.Description = desc
		return upsert(t, name, fs)
	}
	del := func(id string) *discoverypb.StreamResponse {
		return &discoverypb.StreamResponse{ResourceUrl: wire.TypeURL, ResourceId: id, Operation: discoverypb.StreamResponse_DELETE}
	}
	rs = append(rs, changed("svc-1", "v2"), del("svc-2"), changed("svc-3", "v2"), del("svc-3"), changed("svc-3", "v3"))
	before := g.count()

	for _, a := range f.pushDuringATransaction(g, false, rs) {
		require.Equal(t, int32(codes.OK), a.GetStatus().GetCode(), a.GetStatus().GetMessage())
	}
	require.Equal(t, 2, g.count()-before, "%d responses in two transactions: the first, and all that arrived meanwhile", n)

	stored := storedMeshB(t, f.store)
	require.Len(t, stored, n-5-1)
	for id, want := range map[string]string{"svc-1": "v2", "svc-3": "v3", "svc-4": ""} {
		imp, ok := f.cat.Import("mesh-b", id)
		require.True(t, ok, id)
		require.Equal(t, want, imp.Service.Description, id)
		require.Contains(t, stored, id)
	}
	require.NotContains(t, stored, "svc-2")
	_, ok := f.cat.Import("mesh-b", "svc-2")
	require.False(t, ok)
}

// TestFailedTransactionAnswersNoResponseWithAnACK: when the transaction
// fails, no response of its batch is ACKed (each is NACKed with
// Unavailable, which the peer retries), and the store and the catalog are
// as before; nothing is answered before the transaction returns.
func TestFailedTransactionAnswersNoResponseWithAnACK(t *testing.T) {
	g := newGateStore()
	f := newFixtureWith(t, fixtureOpts{wrap: g.wrap, imports: []string{"payments", "orders"}})
	storeBefore := storedMeshB(t, f.store)
	catBefore := f.cat.Imports()
	require.Len(t, storeBefore, 2)

	const n = 20
	var rs []*discoverypb.StreamResponse
	for i := range n - 2 {
		rs = append(rs, upsert(t, fmt.Sprintf("svc-%d", i), good(fmt.Sprintf("svc-%d", i))))
	}
	fs := good("payments")
	fs.Description = "changed"
	rs = append(rs, upsert(t, "payments", fs),
		&discoverypb.StreamResponse{ResourceUrl: wire.TypeURL, ResourceId: "orders", Operation: discoverypb.StreamResponse_DELETE})

	answers := f.pushDuringATransaction(g, true, rs)
	for i, a := range answers {
		require.Equal(t, int32(codes.Unavailable), a.GetStatus().GetCode(), "response %d", i)
	}
	require.Equal(t, `store: "svc-0" not imported, try again`, answers[0].GetStatus().GetMessage())
	require.Equal(t, `store: "payments" not imported, try again`, answers[n-2].GetStatus().GetMessage())
	require.Equal(t, `store: "orders" not deleted, try again`, answers[n-1].GetStatus().GetMessage())
	require.Equal(t, storeBefore, storedMeshB(t, f.store), "the store is unchanged")
	require.Equal(t, catBefore, f.cat.Imports(), "the catalog is unchanged")

	// The peer's retry goes through once the store does.
	g.set(false, false)
	for _, r := range rs {
		require.Equal(t, int32(codes.OK), f.send(r).GetStatus().GetCode())
	}
	require.Len(t, storedMeshB(t, f.store), n-1)
}

// TestBatchWaitsForTheWindow: with a window negotiated, a batch waits for
// the responses the peer may still send, up to the window, and stores
// them in one transaction. The delay is long enough never to end the
// wait here.
func TestBatchWaitsForTheWindow(t *testing.T) {
	g := newGateStore()
	caps := session.Capabilities{Window: 64}
	f := newFixtureWith(t, fixtureOpts{wrap: g.wrap, local: caps, remote: caps, batchDelay: time.Hour})
	require.Eventually(t, func() bool { _, ok := f.act.Negotiated(); return ok }, 10*time.Second, time.Millisecond)
	before := g.count()
	for i := range caps.Window {
		f.push(upsert(t, fmt.Sprintf("svc-%d", i), good(fmt.Sprintf("svc-%d", i))))
	}
	for i, a := range f.answers(caps.Window) {
		require.Equal(t, fmt.Sprint(i+1), a.GetResponseNonce())
		require.Equal(t, int32(codes.OK), a.GetStatus().GetCode(), a.GetStatus().GetMessage())
	}
	require.Equal(t, 1, g.count()-before, "a window in one transaction")
	require.Len(t, storedMeshB(t, f.store), caps.Window)
}

// TestBatchDelayIsBounded: a response the peer sends alone, within a
// window it does not fill, is still stored and answered once the delay
// has passed.
func TestBatchDelayIsBounded(t *testing.T) {
	caps := session.Capabilities{Window: 64}
	f := newFixtureWith(t, fixtureOpts{local: caps, remote: caps, batchDelay: time.Millisecond})
	require.Eventually(t, func() bool { _, ok := f.act.Negotiated(); return ok }, 10*time.Second, time.Millisecond)
	a := f.send(upsert(t, "payments", good("payments")))
	require.Equal(t, int32(codes.OK), a.GetStatus().GetCode(), a.GetStatus().GetMessage())
}
