package peer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
)

// specPeer speaks Hamlet as the public specification has it and nothing
// more: no capabilities metadata, an empty context, resource ids that are
// fqdns, and responses sent back to back without waiting for ACKs.
type specPeer struct {
	t      *testing.T
	stream discoverypb.DiscoveryService_EstablishStreamClient
	cancel context.CancelFunc
	nonce  int
	// frames carries what the agent sends, and then the error that ended
	// the stream.
	frames chan *discoverypb.BidirectionalStream
	err    chan error
}

func dialSpecPeer(t *testing.T, p *pki, as, addr string) *specPeer {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(p.tls(t, as).ClientConfig(tlsconfig.AuthorizeAny()))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discoverypb.NewDiscoveryServiceClient(conn).EstablishStream(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{ResourceUrl: wire.TypeURL}}))
	x := &specPeer{t: t, stream: stream, cancel: cancel, frames: make(chan *discoverypb.BidirectionalStream, 16), err: make(chan error, 1)}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				x.err <- err
				return
			}
			x.frames <- m
		}
	}()
	return x
}

func (s *specPeer) recv() *discoverypb.BidirectionalStream {
	s.t.Helper()
	select {
	case m := <-s.frames:
		return m
	case err := <-s.err:
		s.t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		s.t.Fatal("no frame within 10s")
	}
	return nil
}

func (s *specPeer) upsert(fs *typespb.FederatedService) string {
	b, err := proto.Marshal(fs)
	require.NoError(s.t, err)
	s.nonce++
	n := fmt.Sprint("n", s.nonce)
	require.NoError(s.t, s.stream.Send(&discoverypb.BidirectionalStream{Response: &discoverypb.StreamResponse{
		Nonce: n, ResourceUrl: wire.TypeURL, ResourceId: fs.GetFqdn(),
		Resource: &anypb.Any{TypeUrl: wire.TypeURL, Value: b}, Operation: discoverypb.StreamResponse_UPSERT,
	}}))
	return n
}

// next reads frames until want ACK/NACK nonces are all answered, ACKing the
// responses the agent publishes on the way; it returns the answers by nonce
// and the resource ids the agent published.
func (s *specPeer) next(want ...string) (answers map[string]codes.Code, published []string) {
	answers = map[string]codes.Code{}
	for len(answers) < len(want) {
		m := s.recv()
		if r := m.GetResponse(); r != nil {
			published = append(published, r.GetResourceId())
			require.NoError(s.t, s.stream.Send(&discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{
				ResourceUrl: wire.TypeURL, ResponseNonce: r.GetNonce(), Status: status.New(codes.OK, "").Proto()}}))
			continue
		}
		answers[m.GetRequest().GetResponseNonce()] = codes.Code(m.GetRequest().GetStatus().GetCode())
	}
	return answers, published
}

func specService(name string) *typespb.FederatedService {
	return &typespb.FederatedService{
		Name: name, Fqdn: name + ".mesh-x.example",
		Endpoints: []*typespb.FederatedService_Endpoint{{Address: "192.0.2.7", Port: 443}},
		Sans:      []string{"spiffe://mesh-x.example/ingress"},
		Instances: []*typespb.FederatedService_Instance{{Id: "web", Protocol: "HTTP", Metadata: map[string]string{"sni": "web." + name}}},
	}
}

func TestSpecPeerWithoutExtensions(t *testing.T) {
	p := newPKI(t, "mesh-b", "mesh-x")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-x", p.td("mesh-x"), "")}, func(c *peer.Config) { c.Grace = 300 * time.Millisecond })
	b.export([]string{"payments"}, "mesh-x")

	x := dialSpecPeer(t, p, "mesh-x", b.addr)
	bad := specService("broken")
	bad.Endpoints[0].Port = 0
	n1 := x.upsert(specService("alpha"))
	n2 := x.upsert(bad)
	n3 := x.upsert(specService("beta"))
	answers, published := x.next(n1, n2, n3)
	assert.Equal(t, map[string]codes.Code{n1: codes.OK, n2: codes.InvalidArgument, n3: codes.OK}, answers)
	b.eventuallyImports("mesh-x", "alpha.mesh-x.example", "beta.mesh-x.example")
	imp, _ := b.catalog.Import("mesh-x", "alpha.mesh-x.example")
	assert.Equal(t, "web.alpha", imp.Service.Instances[0].SNI, "metadata keys are matched case-insensitively")
	if len(published) == 0 {
		_, published = x.next()
	}

	// Reconnect and resend only alpha: beta goes once the grace period
	// has passed, since this peer cannot say its catalog is complete.
	x.cancel()
	x = dialSpecPeer(t, p, "mesh-x", b.addr)
	n := x.upsert(specService("alpha"))
	answers, _ = x.next(n)
	assert.Equal(t, codes.OK, answers[n])
	b.eventuallyImports("mesh-x", "alpha.mesh-x.example")
}

// The window is an extension: this agent allows 64 responses in flight, but
// a peer that did not advertise a window gets one at a time.
func TestSpecPeerReceivesCatalogOneAtATime(t *testing.T) {
	p := newPKI(t, "mesh-b", "mesh-x")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-x", p.td("mesh-x"), "")}, func(c *peer.Config) { c.Window = 64 })
	b.export([]string{"payments", "ledger", "fraud"}, "mesh-x")
	x := dialSpecPeer(t, p, "mesh-x", b.addr)
	var got []string
	for len(got) < 3 {
		r := x.recv().GetResponse()
		require.NotNil(t, r)
		assert.Equal(t, discoverypb.StreamResponse_UPSERT, r.GetOperation())
		got = append(got, r.GetResourceId())
		// Nothing more arrives until this one is acknowledged.
		assertNoFrame(t, x, 100*time.Millisecond)
		require.NoError(t, x.stream.Send(&discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{
			ResourceUrl: wire.TypeURL, ResponseNonce: r.GetNonce(), Status: status.New(codes.OK, "").Proto()}}))
	}
	assert.ElementsMatch(t, []string{"payments", "ledger", "fraud"}, got)
	require.Eventually(t, func() bool { return len(b.catalog.Deliveries("mesh-x")) == 3 }, 10*time.Second, 10*time.Millisecond)
}

func TestSecondStreamFromSamePeerReplacesFirst(t *testing.T) {
	p := newPKI(t, "mesh-b", "mesh-x")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-x", p.td("mesh-x"), "")}, nil)
	first := dialSpecPeer(t, p, "mesh-x", b.addr)
	n := first.upsert(specService("alpha"))
	first.next(n)
	second := dialSpecPeer(t, p, "mesh-x", b.addr)
	n = second.upsert(specService("beta"))
	second.next(n)
	var err error
	select {
	case err = <-first.err:
	case <-time.After(10 * time.Second):
		t.Fatal("the first stream was not ended")
	}
	assert.Equal(t, codes.Aborted, status.Code(err))
	require.ErrorContains(t, err, "replaced by a newer stream from the same peer")
	b.eventuallyImports("mesh-x", "alpha.mesh-x.example", "beta.mesh-x.example")
	assert.Equal(t, peer.Connected, b.status("mesh-x").State)
}

// assertNoFrame checks that nothing arrives on x's stream within d. A
// quiet stream is the expected outcome, so the wait bounds nothing the code
// under test does.
func assertNoFrame(t *testing.T, x *specPeer, d time.Duration) {
	t.Helper()
	select {
	case m := <-x.frames:
		t.Fatalf("unexpected frame before the ACK: %v", m)
	case <-time.After(d):
	}
}

func TestChangesWhileInFlightCoalesceToLatest(t *testing.T) {
	p := newPKI(t, "mesh-b", "mesh-x")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-x", p.td("mesh-x"), "")}, nil)
	b.export([]string{"payments"}, "mesh-x")
	x := dialSpecPeer(t, p, "mesh-x", b.addr)
	first := x.recv().GetResponse()
	require.Equal(t, "payments", first.GetResourceId())

	// A hundred changes while the first response is unacknowledged.
	for port := uint32(1); port <= 100; port++ {
		e := export("payments", "mesh-b.example", "mesh-x")
		e.Ports[0].Port = 9000 + port
		b.catalog.SetExports([]model.Export{e})
	}
	assertNoFrame(t, x, 100*time.Millisecond)
	ack := func(r *discoverypb.StreamResponse) {
		require.NoError(t, x.stream.Send(&discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{
			ResourceUrl: wire.TypeURL, ResponseNonce: r.GetNonce(), Status: status.New(codes.OK, "").Proto()}}))
	}
	ack(first)
	latest := x.recv().GetResponse()
	var fs typespb.FederatedService
	require.NoError(t, latest.GetResource().UnmarshalTo(&fs))
	assert.Equal(t, "9100", fs.GetInstances()[0].GetMetadata()["PORT"], "the one more response carries the final state")
	ack(latest)
	assertNoFrame(t, x, 100*time.Millisecond)
}
