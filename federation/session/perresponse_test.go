package session_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/session"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
)

// batchOf is the response of the services rs, on a stream that negotiated
// services-per-response.
func batchOf(t *testing.T, rs ...*discoverypb.StreamResponse) *discoverypb.StreamResponse {
	t.Helper()
	b, err := wire.Batch(rs)
	require.NoError(t, err)
	return b
}

func deleteOf(id string) *discoverypb.StreamResponse {
	return &discoverypb.StreamResponse{ResourceUrl: wire.TypeURL, ResourceId: id, Operation: discoverypb.StreamResponse_DELETE}
}

func statusAny(t *testing.T, st *spb.Status) *anypb.Any {
	t.Helper()
	a, err := anypb.New(st)
	require.NoError(t, err)
	return a
}

// perResponse is a side that accepts n services a response.
func perResponse(n int) session.Capabilities {
	return session.Capabilities{ServicesPerResponse: n}
}

// A batch is answered once, with a plain ACK, and only after every one of
// its services is stored: in one transaction.
func TestBatchIsAnsweredOnceItsServicesAreStored(t *testing.T) {
	g := newGateStore()
	caps := perResponse(8)
	f := newFixtureWith(t, fixtureOpts{wrap: g.wrap, local: caps, remote: caps, imports: []string{"orders"}})
	require.Equal(t, 8, f.negotiated().ServicesPerResponse)
	before := g.count()
	answers := f.pushDuringATransaction(g, false, []*discoverypb.StreamResponse{batchOf(t,
		upsert(t, "payments", good("payments")), upsert(t, "ledger", good("ledger")), deleteOf("orders"), upsert(t, "fraud", good("fraud")))})
	requireStatus(t, &spb.Status{}, answers[0])
	assert.Equal(t, wire.BatchURL, answers[0].GetResourceUrl())
	assert.Equal(t, 1, g.count()-before, "one transaction")
	stored := storedMeshB(t, f.store)
	assert.Len(t, stored, 3)
	for _, id := range []string{"payments", "ledger", "fraud"} {
		assert.Contains(t, stored, id)
	}
	assert.ElementsMatch(t, []string{"payments", "ledger", "fraud"}, f.imported())
	assert.Equal(t, 3.0, f.counter("meshfed_hamlet_responses_received_total", map[string]string{"peer": "mesh-b", "operation": "UPSERT", "code": "OK"}))
	assert.Equal(t, 1.0, f.counter("meshfed_hamlet_responses_received_total", map[string]string{"peer": "mesh-b", "operation": "DELETE", "code": "OK"}))
}

// The services of a batch that pass are stored; the answer names the
// first refused and holds the status of every service, in order.
func TestBatchAnswersEachServiceItRefused(t *testing.T) {
	caps := perResponse(8)
	f := newFixtureWith(t, fixtureOpts{local: caps, remote: caps})
	f.negotiated()
	broken := good("broken")
	broken.Endpoints[0].Port = 0
	far := good("far")
	far.Endpoints[0].Address = "127.0.0.1"
	refusedPort := &spb.Status{Code: int32(codes.InvalidArgument), Message: "endpoints[0].port: 0 is out of range 1-65535"}
	refusedAddr := &spb.Status{Code: int32(codes.InvalidArgument), Message: `endpoints[0].address: "127.0.0.1" is loopback`}
	a := f.send(batchOf(t, upsert(t, "alpha", good("alpha")), upsert(t, "broken", broken), upsert(t, "beta", good("beta")), upsert(t, "far", far)))
	requireStatus(t, &spb.Status{
		Code:    int32(codes.InvalidArgument),
		Message: `2 of 4 services refused; the first, "broken": endpoints[0].port: 0 is out of range 1-65535`,
		Details: []*anypb.Any{statusAny(t, &spb.Status{}), statusAny(t, refusedPort), statusAny(t, &spb.Status{}), statusAny(t, refusedAddr)},
	}, a)
	assert.ElementsMatch(t, []string{"alpha", "beta"}, f.imported())
	var refused []string
	for _, r := range f.cat.Rejections("mesh-b") {
		refused = append(refused, r.ResourceID)
	}
	assert.ElementsMatch(t, []string{"broken", "far"}, refused)
	assert.Equal(t, 2.0, f.counter("meshfed_hamlet_responses_received_total", map[string]string{"peer": "mesh-b", "operation": "UPSERT", "code": "InvalidArgument"}))
}

// A batch is refused whole, and nothing of it stored, when the stream did
// not negotiate batches or when it is not one this side can take.
func TestBatchRefusedWhole(t *testing.T) {
	three := batchOf(t, upsert(t, "a", good("a")), upsert(t, "b", good("b")), upsert(t, "c", good("c")))
	for _, tc := range []struct {
		name          string
		local, remote session.Capabilities
		response      func() *discoverypb.StreamResponse
		msg           string
	}{
		{"peer did not advertise it", perResponse(8), session.Capabilities{}, func() *discoverypb.StreamResponse { return three },
			`resource_url: "type.googleapis.com/meshfed.hamlet.v1.Batch" is the services-per-response extension, which this stream did not negotiate; ignored`},
		{"this side did not advertise it", session.Capabilities{}, perResponse(8), func() *discoverypb.StreamResponse { return three },
			`resource_url: "type.googleapis.com/meshfed.hamlet.v1.Batch" is the services-per-response extension, which this stream did not negotiate; ignored`},
		{"more services than negotiated", perResponse(2), perResponse(8), func() *discoverypb.StreamResponse { return three },
			"resource.value: the batch holds 3 services, over the 2 per response this stream negotiated"},
		{"no service", perResponse(8), perResponse(8), func() *discoverypb.StreamResponse { return batchOf(t) },
			"resource.value: the batch holds no service"},
		{"another type", perResponse(8), perResponse(8), func() *discoverypb.StreamResponse {
			r := batchOf(t, upsert(t, "a", good("a")))
			r.Resource.TypeUrl = wire.TypeURL
			return r
		}, `resource.type_url: "type.googleapis.com/federation.types.v1alpha2.FederatedService" is not "type.googleapis.com/meshfed.hamlet.v1.Batch"`},
		{"undecodable", perResponse(8), perResponse(8), func() *discoverypb.StreamResponse {
			r := batchOf(t, upsert(t, "a", good("a")))
			r.Resource.Value = []byte{0x0a, 0xff}
			return r
		}, "resource.value: is not a batch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureWith(t, fixtureOpts{local: tc.local, remote: tc.remote})
			f.negotiated()
			a := f.send(tc.response())
			require.Equal(t, int32(codes.InvalidArgument), a.GetStatus().GetCode())
			require.Contains(t, a.GetStatus().GetMessage(), tc.msg)
			require.Empty(t, a.GetStatus().GetDetails(), "the code is every service's")
			assert.Empty(t, f.imported())
			assert.Empty(t, storedMeshB(t, f.store))
			unnegotiated := 0.0
			if strings.Contains(tc.msg, "did not negotiate") {
				unnegotiated = 1
			}
			assert.Equal(t, unnegotiated, f.counter("meshfed_hamlet_unnegotiated_extension_total",
				map[string]string{"peer": "mesh-b", "extension": "services-per-response"}))
		})
	}
}

// Batches that arrive together share transactions of at most MaxBatch
// services, and none is split: one that does not fit opens the next.
func TestBatchesShareTransactionsOfAtMostMaxBatch(t *testing.T) {
	g := newGateStore()
	caps := session.Capabilities{Window: 64, ServicesPerResponse: 3}
	f := newFixtureWith(t, fixtureOpts{wrap: g.wrap, local: caps, remote: caps, maxBatch: 5})
	f.negotiated()
	n := 0
	services := func(k int) *discoverypb.StreamResponse {
		var rs []*discoverypb.StreamResponse
		for range k {
			n++
			rs = append(rs, upsert(t, fmt.Sprintf("svc-%d", n), good(fmt.Sprintf("svc-%d", n))))
		}
		if k == 1 {
			return rs[0]
		}
		return batchOf(t, rs...)
	}
	before := g.count()
	rs := []*discoverypb.StreamResponse{services(3), services(3), services(3), services(1), services(3), services(2)}
	for i, a := range f.pushDuringATransaction(g, false, rs) {
		requireStatus(t, &spb.Status{}, a)
		require.Equal(t, rs[i].GetResourceUrl(), a.GetResourceUrl())
	}
	// The first, held; the second alone, since the third would make 6;
	// the third with the single service; the last two together.
	require.Equal(t, []int{3, 3, 4, 5}, g.sizesSince(before))
	require.Len(t, storedMeshB(t, f.store), 15)
}

// exportsTo are n exports of this side to mesh-b, named e-00..., whose
// descriptions hold pad bytes.
func exportsTo(n, pad int) []model.Export {
	out := make([]model.Export, n)
	for i := range out {
		name := fmt.Sprintf("e-%02d", i)
		out[i] = model.Export{Name: name, FQDN: name + ".mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b"},
			Description: strings.Repeat("x", pad), Ports: []model.ExportPort{{Name: "http", Port: 80, Protocol: model.HTTP}}}
	}
	return out
}

// published reads the next response this side publishes and the services
// it carries.
func (f *fixture) published() (*discoverypb.StreamResponse, []*discoverypb.StreamResponse) {
	f.t.Helper()
	select {
	case m := <-f.pipe.out:
		r := m.GetResponse()
		require.NotNil(f.t, r, "an answer where a response was expected: %v", m)
		if r.GetResourceUrl() != wire.BatchURL {
			return r, []*discoverypb.StreamResponse{r}
		}
		es, err := wire.Unbatch(r, 4096)
		require.NoError(f.t, err)
		return r, es
	case <-time.After(10 * time.Second):
		f.t.Fatal("nothing published")
	}
	return nil, nil
}

// answer answers r as the peer, with st.
func (f *fixture) answer(r *discoverypb.StreamResponse, st *spb.Status) {
	f.pipe.in <- &discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{
		ResourceUrl: r.GetResourceUrl(), ResponseNonce: r.GetNonce(), Status: st}}
}

func ids(rs []*discoverypb.StreamResponse) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetResourceId())
	}
	return out
}

// With services-per-response negotiated, the catalog goes in responses of
// as many services as agreed; one service alone goes as the specification
// has it.
func TestPublisherSendsSeveralServicesPerResponse(t *testing.T) {
	caps := perResponse(4)
	f := newFixtureWith(t, fixtureOpts{local: caps, remote: caps, exports: exportsTo(10, 0)})
	var sizes, got []string
	first := true
	for len(got) < 10 {
		r, es := f.published()
		if first {
			// Sent before the peer's advertisement may have been read.
			f.negotiated()
			first = false
		}
		sizes = append(sizes, fmt.Sprint(len(es)))
		got = append(got, ids(es)...)
		if len(es) > 1 {
			require.Equal(t, wire.BatchURL, r.GetResourceUrl())
		} else {
			require.Equal(t, wire.TypeURL, r.GetResourceUrl())
		}
		f.answer(r, &spb.Status{})
	}
	require.Equal(t, []string{"e-00", "e-01", "e-02", "e-03", "e-04", "e-05", "e-06", "e-07", "e-08", "e-09"}, got)
	require.Contains(t, [][]string{{"4", "4", "2"}, {"1", "4", "4", "1"}}, sizes)
	require.Eventually(t, func() bool { return len(f.cat.Deliveries("mesh-b")) == 10 }, 10*time.Second, time.Millisecond)
}

// nextBatch ACKs what this side publishes until it sends a response of
// several services, and returns it. The first response may go before the
// peer's advertisement is read, alone.
func (f *fixture) nextBatch() (*discoverypb.StreamResponse, []*discoverypb.StreamResponse) {
	f.t.Helper()
	for {
		r, es := f.published()
		if len(es) > 1 {
			return r, es
		}
		f.negotiated()
		f.answer(r, &spb.Status{})
	}
}

// The peer's answer to a batch says which services it stored: each gets
// its own outcome, and one refused with Unavailable is sent again.
func TestPublisherTakesEachServicesOutcome(t *testing.T) {
	caps := perResponse(4)
	f := newFixtureWith(t, fixtureOpts{local: caps, remote: caps, exports: exportsTo(5, 0)})
	r, es := f.nextBatch()
	require.Len(t, es, 4)
	names := ids(es)
	f.answer(r, &spb.Status{Code: int32(codes.InvalidArgument), Message: "1 of 4 refused", Details: []*anypb.Any{
		statusAny(t, &spb.Status{}),
		statusAny(t, &spb.Status{Code: int32(codes.InvalidArgument), Message: "sans[0]: no"}),
		statusAny(t, &spb.Status{Code: int32(codes.Unavailable), Message: "store: try again"}),
		statusAny(t, &spb.Status{}),
	}})
	for {
		// The fifth export, if it comes second, then the one to retry.
		again, es := f.published()
		f.answer(again, &spb.Status{})
		if ids(es)[0] == names[2] {
			require.Len(t, es, 1, "only the one the peer could not store goes again")
			break
		}
	}
	require.Eventually(t, func() bool { return f.cat.Deliveries("mesh-b")[names[2]].Code == codes.OK }, 10*time.Second, time.Millisecond)
	d := f.cat.Deliveries("mesh-b")
	for i, want := range []catalog.Delivery{
		{Acked: true, Code: codes.OK},
		{Code: codes.InvalidArgument, Message: "sans[0]: no"},
		{Acked: true, Code: codes.OK},
		{Acked: true, Code: codes.OK},
	} {
		got := d[names[i]]
		got.At = time.Time{}
		assert.Equal(t, want, got, names[i])
	}
	assert.Equal(t, 1.0, f.counter("meshfed_hamlet_answers_received_total", map[string]string{"peer": "mesh-b", "code": "InvalidArgument"}))
	assert.Equal(t, 1.0, f.counter("meshfed_hamlet_answers_received_total", map[string]string{"peer": "mesh-b", "code": "Unavailable"}))
	assert.Equal(t, 4.0, f.counter("meshfed_hamlet_answers_received_total", map[string]string{"peer": "mesh-b", "code": "OK"}), "two of the batch, the retry, and the fifth")
}

// A batch refused whole, its answer without a status per service, leaves
// every service it carried refused with the answer's code.
func TestPublisherTakesAWholeRefusalForEveryService(t *testing.T) {
	caps := perResponse(4)
	f := newFixtureWith(t, fixtureOpts{local: caps, remote: caps, exports: exportsTo(3, 0)})
	r, es := f.nextBatch()
	f.answer(r, &spb.Status{Code: int32(codes.InvalidArgument), Message: "not negotiated"})
	for _, name := range ids(es) {
		require.Eventually(t, func() bool { return f.cat.Deliveries("mesh-b")[name].Code == codes.InvalidArgument }, 10*time.Second, time.Millisecond, name)
	}
}

// Beyond its first service, a response holds at most 1 MiB of them: large
// services go alone, as the specification has it.
func TestPublisherBoundsTheBytesOfAResponse(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pad, max int
	}{
		{"two of 400 KB fit, three would not", 400 << 10, 2},
		{"600 KB each go alone", 600 << 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caps := perResponse(4)
			f := newFixtureWith(t, fixtureOpts{local: caps, remote: caps, exports: exportsTo(5, tc.pad)})
			var sizes []int
			for got := 0; got < 5; {
				r, es := f.published()
				f.negotiated()
				require.LessOrEqual(t, len(es), tc.max)
				sizes, got = append(sizes, len(es)), got+len(es)
				f.answer(r, &spb.Status{})
			}
			require.Contains(t, sizes, tc.max)
		})
	}
}
