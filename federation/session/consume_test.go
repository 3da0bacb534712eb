package session_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/federation/session"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/store"
)

// pipe is one end of an in-process stream: what the session sends arrives
// on out, what the test puts on in the session receives.
type pipe struct {
	in  chan *discoverypb.BidirectionalStream
	out chan *discoverypb.BidirectionalStream
}

func (p *pipe) Send(m *discoverypb.BidirectionalStream) error { p.out <- m; return nil }
func (p *pipe) Recv() (*discoverypb.BidirectionalStream, error) {
	m, ok := <-p.in
	if !ok {
		return nil, context.Canceled
	}
	return m, nil
}

type fixture struct {
	t     *testing.T
	store *store.Store
	cat   *catalog.Catalog
	pipe  *pipe
	reg   *prometheus.Registry
	act   *session.Activity
	nonce int
}

// fixtureOpts vary the session under test; the zero value is a plain
// specification stream without grace period.
type fixtureOpts struct {
	max           int
	alias         string
	local, remote session.Capabilities
	grace         time.Duration
	clock         *session.FakeClock
	// imports are mesh-b's services this agent holds from an earlier
	// stream, as after a restart.
	imports []string
	// wrap, when set, stands between the catalog and the real store.
	wrap func(*store.Store) catalog.Store
	// batchDelay is the session's BatchDelay.
	batchDelay time.Duration
	// maxBatch is the session's MaxBatch; config's default when zero.
	maxBatch int
	// exports are this side's, besides one exported to nobody.
	exports []model.Export
}

func newFixture(t *testing.T, maxServices int, alias string) *fixture {
	return newFixtureWith(t, fixtureOpts{max: maxServices, alias: alias})
}

func newFixtureWith(t *testing.T, fo fixtureOpts) *fixture {
	st, err := store.Open(filepath.Join(t.TempDir(), "meshfed.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	log := zaptest.NewLogger(t)
	var cst catalog.Store = st
	if fo.wrap != nil {
		cst = fo.wrap(st)
	}
	cat := catalog.New(cst, log)
	td := spiffeid.RequireTrustDomainFromString("mesh-b.example")
	require.NoError(t, cat.SetPeers([]catalog.Peer{
		{Peer: model.Peer{Name: "mesh-b", TrustDomain: td.Name()}, MaxServices: fo.max, Alias: fo.alias, Policy: validate.Policy{TrustDomain: td}},
		{Peer: model.Peer{Name: "mesh-c", TrustDomain: "mesh-c.example"}, Policy: validate.Policy{TrustDomain: spiffeid.RequireTrustDomainFromString("mesh-c.example")}},
	}))
	cat.SetExports(append([]model.Export{{Name: "local", FQDN: "local.mesh-a.example", Mode: model.Terminate,
		Ports: []model.ExportPort{{Name: "http", Port: 80, Protocol: model.HTTP}}}}, fo.exports...))
	search := svc("search", "search.mesh-c.example")
	raw, err := proto.Marshal(wire.FromModel(search))
	require.NoError(t, err)
	require.NoError(t, cat.Upsert("mesh-c", "search", search, raw))
	for _, name := range fo.imports {
		s := svc(name, name+".mesh-b.example")
		raw, err := proto.Marshal(wire.FromModel(s))
		require.NoError(t, err)
		require.NoError(t, cat.Upsert("mesh-b", name, s, raw))
	}

	reg := prometheus.NewRegistry()
	act := &session.Activity{}
	p := &pipe{in: make(chan *discoverypb.BidirectionalStream), out: make(chan *discoverypb.BidirectionalStream, 16)}
	if fo.maxBatch == 0 {
		fo.maxBatch = config.DefaultMaxBatch
	}
	o := session.Options{
		Peer: "mesh-b", Catalog: cat, Ingress: func() wire.Ingress { return wire.Ingress{} }, Log: log,
		Local: fo.local, Remote: func() (session.Capabilities, error) { return fo.remote, nil },
		Grace: fo.grace, Activity: act, Metrics: session.NewMetrics(reg), BatchDelay: fo.batchDelay, MaxBatch: fo.maxBatch,
	}
	if fo.clock != nil {
		o = session.WithClock(o, fo.clock)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := session.Run(ctx, p, o); !errors.Is(err, context.Canceled) {
			t.Errorf("session ended: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); close(p.in); <-done })
	return &fixture{t: t, store: st, cat: cat, pipe: p, reg: reg, act: act}
}

func svc(name, fqdn string) model.Service {
	return model.Service{
		Name: name, FQDN: fqdn,
		Endpoints: []model.Endpoint{{Address: "192.0.2.1", Port: 443}},
		SANs:      []string{"spiffe://mesh-b.example/ingress"},
		Instances: []model.Instance{{ID: "http", Protocol: model.HTTP, Port: 8080}},
	}
}

// send publishes r as the peer and returns this side's answer, ACKing
// what this side publishes in between.
func (f *fixture) send(r *discoverypb.StreamResponse) *discoverypb.StreamRequest {
	f.t.Helper()
	f.nonce++
	r.Nonce = fmt.Sprint(f.nonce)
	f.pipe.in <- &discoverypb.BidirectionalStream{Response: r}
	for {
		select {
		case m := <-f.pipe.out:
			if req := m.GetRequest(); req != nil && req.GetResponseNonce() == r.Nonce {
				return req
			}
		case <-time.After(10 * time.Second):
			f.t.Fatal("no answer")
		}
	}
}

func upsert(t *testing.T, id string, fs *typespb.FederatedService) *discoverypb.StreamResponse {
	b, err := proto.Marshal(fs)
	require.NoError(t, err)
	return &discoverypb.StreamResponse{ResourceUrl: wire.TypeURL, ResourceId: id, Operation: discoverypb.StreamResponse_UPSERT,
		Resource: &anypb.Any{TypeUrl: wire.TypeURL, Value: b}}
}

func good(name string) *typespb.FederatedService {
	return wire.FromModel(svc(name, name+".mesh-b.example"))
}

func TestRejectedUpdateLeavesStoreAndCatalogUnchanged(t *testing.T) {
	cases := []struct {
		name     string
		max      int
		alias    string
		response func(t *testing.T) *discoverypb.StreamResponse
		code     codes.Code
		msg      string
	}{
		{name: "unknown operation", response: func(t *testing.T) *discoverypb.StreamResponse {
			r := upsert(t, "payments", good("payments"))
			r.Operation = discoverypb.StreamResponse_UNKNOWN
			return r
		}, code: codes.InvalidArgument, msg: "operation"},
		{name: "wrong resource type", response: func(t *testing.T) *discoverypb.StreamResponse {
			r := upsert(t, "payments", good("payments"))
			r.Resource.TypeUrl = "type.googleapis.com/google.protobuf.Empty"
			return r
		}, code: codes.InvalidArgument, msg: "google.protobuf.Empty"},
		{name: "undecodable bytes", response: func(t *testing.T) *discoverypb.StreamResponse {
			r := upsert(t, "payments", good("payments"))
			r.Resource.Value = []byte{0xff, 0xff, 0xff}
			return r
		}, code: codes.InvalidArgument, msg: "resource"},
		{name: "port out of range", response: func(t *testing.T) *discoverypb.StreamResponse {
			fs := good("payments")
			fs.Endpoints[0].Port = 70000
			return upsert(t, "payments", fs)
		}, code: codes.InvalidArgument, msg: "endpoints[0].port: 70000"},
		{name: "loopback endpoint", response: func(t *testing.T) *discoverypb.StreamResponse {
			fs := good("payments")
			fs.Endpoints[0].Address = "127.0.0.1"
			return upsert(t, "payments", fs)
		}, code: codes.InvalidArgument, msg: `endpoints[0].address: "127.0.0.1"`},
		{name: "san of another trust domain", response: func(t *testing.T) *discoverypb.StreamResponse {
			fs := good("payments")
			fs.Sans = []string{"spiffe://mesh-c.example/ingress"}
			return upsert(t, "payments", fs)
		}, code: codes.InvalidArgument, msg: `sans[0]: "spiffe://mesh-c.example/ingress"`},
		{name: "fqdn of another peer's import", response: func(t *testing.T) *discoverypb.StreamResponse {
			fs := good("payments")
			fs.Fqdn = "search.mesh-c.example"
			return upsert(t, "payments", fs)
		}, code: codes.AlreadyExists, msg: `fqdn: "search.mesh-c.example" is already imported from peer "mesh-c" as "search"`},
		{name: "fqdn of another peer's import in other case", response: func(t *testing.T) *discoverypb.StreamResponse {
			fs := good("payments")
			fs.Fqdn = "SEARCH.Mesh-C.example"
			return upsert(t, "payments", fs)
		}, code: codes.AlreadyExists, msg: `fqdn: "search.mesh-c.example" is already imported from peer "mesh-c" as "search"`},
		{name: "fqdn of a local export", response: func(t *testing.T) *discoverypb.StreamResponse {
			fs := good("payments")
			fs.Fqdn = "local.mesh-a.example"
			return upsert(t, "payments", fs)
		}, code: codes.AlreadyExists, msg: `fqdn: "local.mesh-a.example" is already a local export ("local")`},
		{name: "over the peer's maximum", max: 1, response: func(t *testing.T) *discoverypb.StreamResponse {
			return upsert(t, "ledger", good("ledger"))
		}, code: codes.ResourceExhausted, msg: `peer "mesh-b" is at its maximum of 1 services; "ledger" not imported`},
		{name: "alias that is no DNS name", alias: "{name}_{peer}.global", response: func(t *testing.T) *discoverypb.StreamResponse {
			return upsert(t, "payments", good("payments"))
		}, code: codes.InvalidArgument, msg: "alias"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.max, "")
			ack := f.send(upsert(t, "payments", good("payments")))
			require.Equal(t, int32(codes.OK), ack.GetStatus().GetCode(), ack.GetStatus().GetMessage())
			before, err := f.store.Imports()
			require.NoError(t, err)
			prev, ok := f.cat.Import("mesh-b", "payments")
			require.True(t, ok)

			if tc.alias != "" {
				p, _ := f.cat.Peer("mesh-b")
				p.Alias = tc.alias
				p2, _ := f.cat.Peer("mesh-c")
				require.NoError(t, f.cat.SetPeers([]catalog.Peer{p, p2}))
			}
			nack := f.send(tc.response(t))
			assert.Equal(t, tc.code, codes.Code(nack.GetStatus().GetCode()))
			assert.Contains(t, nack.GetStatus().GetMessage(), tc.msg)

			after, err := f.store.Imports()
			require.NoError(t, err)
			assert.Equal(t, before, after, "the store is unchanged")
			cur, ok := f.cat.Import("mesh-b", "payments")
			require.True(t, ok)
			assert.Equal(t, prev, cur, "the previous good version stays")
		})
	}
}

func TestAliasGivesCollidingServiceAnotherName(t *testing.T) {
	f := newFixture(t, 0, "{name}.{peer}.global")
	fs := good("search")
	fs.Fqdn = "search.mesh-c.example"
	ack := f.send(upsert(t, "search", fs))
	require.Equal(t, int32(codes.OK), ack.GetStatus().GetCode(), ack.GetStatus().GetMessage())
	imp, ok := f.cat.Import("mesh-b", "search")
	require.True(t, ok)
	assert.Equal(t, "search.mesh-b.global", imp.LocalFQDN)
	assert.Equal(t, "search.mesh-c.example", imp.Service.FQDN)
}

func TestDeleteIsIdempotent(t *testing.T) {
	f := newFixture(t, 0, "")
	require.Equal(t, int32(codes.OK), f.send(upsert(t, "payments", good("payments"))).GetStatus().GetCode())
	del := &discoverypb.StreamResponse{ResourceUrl: wire.TypeURL, ResourceId: "payments", Operation: discoverypb.StreamResponse_DELETE}
	require.Equal(t, int32(codes.OK), f.send(del).GetStatus().GetCode())
	del2 := &discoverypb.StreamResponse{ResourceUrl: wire.TypeURL, ResourceId: "payments", Operation: discoverypb.StreamResponse_DELETE}
	require.Equal(t, int32(codes.OK), f.send(del2).GetStatus().GetCode())
	_, ok := f.cat.Import("mesh-b", "payments")
	assert.False(t, ok)
	recs, err := f.store.Imports()
	require.NoError(t, err)
	for _, r := range recs {
		assert.NotEqual(t, "payments", r.ResourceID)
	}
}

// requireStatus checks an answer's status message exactly, field by field:
// an ACK must carry status{code: 0}, not leave it out.
func requireStatus(t *testing.T, want *spb.Status, req *discoverypb.StreamRequest) {
	t.Helper()
	require.NotNil(t, req.GetStatus(), "the answer carries no status")
	if d := cmp.Diff(want, req.GetStatus(), protocmp.Transform()); d != "" {
		t.Fatalf("status (-want +got):\n%s", d)
	}
}

func TestAckCarriesStatusOK(t *testing.T) {
	f := newFixture(t, 0, "")
	requireStatus(t, &spb.Status{Code: int32(codes.OK)}, f.send(upsert(t, "payments", good("payments"))))
	del := &discoverypb.StreamResponse{ResourceUrl: wire.TypeURL, ResourceId: "payments", Operation: discoverypb.StreamResponse_DELETE}
	requireStatus(t, &spb.Status{Code: int32(codes.OK)}, f.send(del))
	bad := good("ledger")
	bad.Endpoints[0].Port = 0
	requireStatus(t, &spb.Status{Code: int32(codes.InvalidArgument), Message: "endpoints[0].port: 0 is out of range 1-65535"}, f.send(upsert(t, "ledger", bad)))
}
