package peer_test

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/federation/peer"
)

// independentPeer is a Hamlet peer written from the proto files and the
// specification alone: it uses the generated code of federation/hamlet and
// plain gRPC, and nothing of meshfed's sessions. It behaves like the known
// implementations meshfed must interoperate with: no capabilities
// metadata, fqdns as resource ids, upper case in its fqdns, keepalive
// pings every 10 s (the gRPC minimum) also without a stream, and status
// read without a nil check.
type independentPeer struct {
	t      *testing.T
	conn   *grpc.ClientConn
	stream discoverypb.DiscoveryService_EstablishStreamClient
	nonce  int
	frames chan *discoverypb.BidirectionalStream
	ended  chan error
}

// The type URL and the sync-complete marker's URL, spelled out here as
// the specification and meshfed's README give them.
const (
	independentTypeURL = "type.googleapis.com/federation.types.v1alpha2.FederatedService"
	syncCompleteURL    = "type.meshfed.io/meshfed.SyncComplete"
)

// independentKeepalive is what a known Hamlet client does, as fast as a
// gRPC client may: ping every 10 s, with or without a stream.
var independentKeepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}

// dialIndependent connects to addr as mesh's agent, without a stream yet.
func dialIndependent(t *testing.T, p *pki, mesh, addr string) *independentPeer {
	t.Helper()
	ca := p.cas[mesh]
	svid, err := ca.IssueX509SVID(spiffeid.RequireFromPath(ca.TrustDomain(), "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	bundles := x509bundle.NewSet()
	for _, other := range p.cas {
		bundles.Add(other.X509Bundle())
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.MTLSClientConfig(svid, bundles, tlsconfig.AuthorizeAny()))),
		grpc.WithKeepaliveParams(independentKeepalive))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &independentPeer{t: t, conn: conn, frames: make(chan *discoverypb.BidirectionalStream, 64), ended: make(chan error, 1)}
}

// open starts the stream with the opening request the specification
// describes.
func (x *independentPeer) open() {
	ctx, cancel := context.WithCancel(context.Background())
	x.t.Cleanup(cancel)
	stream, err := discoverypb.NewDiscoveryServiceClient(x.conn).EstablishStream(ctx)
	require.NoError(x.t, err)
	require.NoError(x.t, stream.Send(&discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{ResourceUrl: independentTypeURL}}))
	x.stream = stream
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				x.ended <- err
				return
			}
			x.frames <- m
		}
	}()
}

func (x *independentPeer) publish(id string, fs *typespb.FederatedService) string {
	b, err := proto.Marshal(fs)
	require.NoError(x.t, err)
	return x.send(&discoverypb.StreamResponse{ResourceUrl: independentTypeURL, ResourceId: id, Operation: discoverypb.StreamResponse_UPSERT,
		Resource: &anypb.Any{TypeUrl: independentTypeURL, Value: b}})
}

func (x *independentPeer) send(r *discoverypb.StreamResponse) string {
	x.nonce++
	r.Nonce = fmt.Sprintf("x-%d", x.nonce)
	require.NoError(x.t, x.stream.Send(&discoverypb.BidirectionalStream{Response: r}))
	return r.Nonce
}

// answers reads until every nonce is answered, and fails the test on an
// answer without status: implementations read status.code without a nil
// check. What the agent publishes meanwhile is checked for the fields the
// proto marks REQUIRED, and ACKed.
func (x *independentPeer) answers(nonces ...string) (map[string]*rpcstatus.Status, []*typespb.FederatedService) {
	x.t.Helper()
	got := map[string]*rpcstatus.Status{}
	var published []*typespb.FederatedService
	for len(got) < len(nonces) {
		var m *discoverypb.BidirectionalStream
		select {
		case m = <-x.frames:
		case err := <-x.ended:
			x.t.Fatalf("the agent ended the stream: %v", err)
		case <-time.After(10 * time.Second):
			x.t.Fatal("no answer within 10 s")
		}
		if r := m.GetResponse(); r != nil {
			published = append(published, x.consume(r))
			continue
		}
		req := m.GetRequest()
		if req.Status == nil {
			x.t.Fatalf("answer to %q carries no status: %v", req.GetResponseNonce(), req)
		}
		got[req.GetResponseNonce()] = req.Status
	}
	return got, published
}

func (x *independentPeer) consume(r *discoverypb.StreamResponse) *typespb.FederatedService {
	var fs typespb.FederatedService
	require.NoError(x.t, r.GetResource().UnmarshalTo(&fs))
	require.NotEmpty(x.t, fs.GetSans(), "sans")
	for _, e := range fs.GetEndpoints() {
		require.NotEmpty(x.t, e.GetLabels(), "endpoint labels of %s", fs.GetName())
	}
	for _, in := range fs.GetInstances() {
		require.NotEmpty(x.t, in.GetId(), "instance id of %s", fs.GetName())
		require.NotEmpty(x.t, in.GetEndpointSelector(), "endpoint_selector of %s", fs.GetName())
	}
	require.NoError(x.t, x.stream.Send(&discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{
		ResourceUrl: independentTypeURL, ResponseNonce: r.GetNonce(), Status: &rpcstatus.Status{Code: int32(codes.OK)}}}))
	return &fs
}

func independentService(name, fqdn string) *typespb.FederatedService {
	return &typespb.FederatedService{
		Name: name, Fqdn: fqdn,
		Sans:      []string{"spiffe://mesh-x.example/ingress"},
		Endpoints: []*typespb.FederatedService_Endpoint{{Address: "192.0.2.7", Port: 443, Labels: []string{"gw"}}},
		Instances: []*typespb.FederatedService_Instance{{Id: "web", Protocol: "HTTP", EndpointSelector: []string{"gw"},
			Metadata: map[string]string{"SNI": "Web." + fqdn}}},
	}
}

// TestIndependentPeer runs a peer written from the protos alone against
// an agent: every answer carries a status, upper-case fqdns and SNI are
// imported lower-cased, what the agent publishes has every REQUIRED field,
// an unnegotiated sync-complete marker deletes nothing, and the peer's
// connection, idle but pinging, is never closed.
func TestIndependentPeer(t *testing.T) {
	p := newPKI(t, "mesh-b", "mesh-x")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-x", p.td("mesh-x"), "")}, func(c *peer.Config) { c.Grace = time.Hour })
	b.export([]string{"payments", "ledger"}, "mesh-x")

	x := dialIndependent(t, p, "mesh-x", b.addr)
	x.open()
	bad := independentService("broken", "broken.mesh-x.example")
	bad.Endpoints[0].Port = 0
	n1 := x.publish("Alpha.MESH-X.example", independentService("alpha", "Alpha.MESH-X.example"))
	n2 := x.publish("broken.mesh-x.example", bad)
	n3 := x.publish("beta.mesh-x.example", independentService("beta", "BETA.mesh-x.example"))
	answers, published := x.answers(n1, n2, n3)
	assert.Equal(t, int32(codes.OK), answers[n1].GetCode(), answers[n1].GetMessage())
	assert.Equal(t, int32(codes.InvalidArgument), answers[n2].GetCode())
	assert.Equal(t, "endpoints[0].port: 0 is out of range 1-65535", answers[n2].GetMessage())
	assert.Equal(t, int32(codes.OK), answers[n3].GetCode(), answers[n3].GetMessage())

	// Imported under the peer's resource ids, with lower-cased names.
	b.eventuallyImports("mesh-x", "Alpha.MESH-X.example", "beta.mesh-x.example")
	alpha, _ := b.catalog.Import("mesh-x", "Alpha.MESH-X.example")
	assert.Equal(t, "alpha.mesh-x.example", alpha.Service.FQDN)
	assert.Equal(t, "alpha.mesh-x.example", alpha.LocalFQDN)
	assert.Equal(t, "web.alpha.mesh-x.example", alpha.Service.Instances[0].SNI)
	beta, _ := b.catalog.Import("mesh-x", "beta.mesh-x.example")
	assert.Equal(t, "beta.mesh-x.example", beta.LocalFQDN)

	// A marker this peer never negotiated: refused, counted, harmless.
	n4 := x.send(&discoverypb.StreamResponse{ResourceUrl: syncCompleteURL})
	more, morePublished := x.answers(n4)
	published = append(published, morePublished...)
	assert.Equal(t, int32(codes.InvalidArgument), more[n4].GetCode())
	b.eventuallyImports("mesh-x", "Alpha.MESH-X.example", "beta.mesh-x.example")
	assert.Equal(t, 1.0, b.counter("meshfed_hamlet_unnegotiated_extension_total", map[string]string{"peer": "mesh-x", "extension": "sync-complete"}))

	// The agent's catalog arrives in full, each with its REQUIRED fields
	// (checked as it arrives).
	for len(published) < 2 {
		select {
		case m := <-x.frames:
			require.NotNil(t, m.GetResponse(), "unexpected frame %v", m)
			published = append(published, x.consume(m.GetResponse()))
		case <-time.After(10 * time.Second):
			t.Fatalf("the agent published %d of its 2 services", len(published))
		}
	}
	var names []string
	for _, fs := range published {
		names = append(names, fs.GetName())
	}
	assert.ElementsMatch(t, []string{"payments", "ledger"}, names)
	assert.Equal(t, connectivity.Ready, x.conn.GetState())
}

var keepaliveLong = flag.Bool("keepalive.long", false,
	"run TestIndependentPeerIdleKeepalive: 45 s of real gRPC keepalive pings without a stream, against the production policy and the old one")

// TestIndependentPeerIdleKeepalive is the slow, unscaled counterpart of
// TestKeepaliveToleratesPingsWithoutStream: the independent peer connects
// and opens no stream, so its gRPC keepalive pings it every 10 s. Against
// the production policy it stays connected for 45 s (four pings and more:
// the old policy sends GOAWAY on the fourth); against the old policy the
// agent sends GOAWAY and the connection leaves READY.
func TestIndependentPeerIdleKeepalive(t *testing.T) {
	if !*keepaliveLong {
		t.Skip("takes 45 s per policy; run with -keepalive.long")
	}
	for _, tc := range []struct {
		name    string
		policy  keepalive.EnforcementPolicy
		dropped bool
	}{
		{"production policy", peer.DefaultKeepaliveEnforcement(), false},
		{"old policy", keepalive.EnforcementPolicy{MinTime: 30 * time.Second}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t, "mesh-b", "mesh-x")
			b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-x", p.td("mesh-x"), "")}, func(c *peer.Config) { c.KeepaliveEnforcement = tc.policy })
			x := dialIndependent(t, p, "mesh-x", b.addr)
			x.conn.Connect()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for st := x.conn.GetState(); st != connectivity.Ready; st = x.conn.GetState() {
				require.True(t, x.conn.WaitForStateChange(ctx, st), "not connected")
			}
			idle, cancel2 := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel2()
			left := x.conn.WaitForStateChange(idle, connectivity.Ready)
			t.Logf("left READY: %t (state %s)", left, x.conn.GetState())
			assert.Equal(t, tc.dropped, left)
		})
	}
}
