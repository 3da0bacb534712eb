package peer_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/federation/wire"
)

// openStream dials addr with creds and sends an opening request, then waits
// for the first frame or the end of the stream.
func openStream(t *testing.T, addr string, creds credentials.TransportCredentials) (*discoverypb.BidirectionalStream, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discoverypb.NewDiscoveryServiceClient(conn).EstablishStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{ResourceUrl: wire.TypeURL}}); err != nil {
		_, err = stream.Recv()
		return nil, err
	}
	return stream.Recv()
}

func TestRefusesCertificateFromUnconfiguredTrustDomain(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b", "evil")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
	b.export([]string{"payments"}, "mesh-a")

	// evil trusts mesh-b's CA, but mesh-b trusts nothing of evil's.
	evil := p.tls(t, "evil").ClientConfig(tlsconfig.AuthorizeAny())
	_, err := openStream(t, b.addr, credentials.NewTLS(evil))
	// With TLS 1.3 the client may finish its side of the handshake before
	// the server rejects its certificate, so the client sees the refusal
	// as a TLS alert or as a broken connection: either way no frame.
	require.Error(t, err)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, peer.Waiting, b.status("mesh-a").State)
}

func TestRefusesConfiguredTrustDomainButUnlistedID(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	s := spec("mesh-a", p.td("mesh-a"), "")
	s.SPIFFEIDs = []string{"spiffe://mesh-a.example/some/other/agent"}
	b := newAgent(t, "mesh-b", p, []peer.Spec{s}, nil)
	b.export([]string{"payments"}, "mesh-a")
	_, err := openStream(t, b.addr, credentials.NewTLS(p.tls(t, "mesh-a").ClientConfig(tlsconfig.AuthorizeAny())))
	require.Error(t, err)
	assert.Equal(t, peer.Waiting, b.status("mesh-a").State)
}

func TestRefusesPlaintextClient(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
	b.export([]string{"payments"}, "mesh-a")
	_, err := openStream(t, b.addr, insecure.NewCredentials())
	require.Error(t, err)
	assert.Equal(t, codes.Unavailable, status.Code(err))
}

func TestRefusesPlaintextServer(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	opened := make(chan struct{}, 1)
	srv := grpc.NewServer()
	discoverypb.RegisterDiscoveryServiceServer(srv, &plaintextServer{opened: opened})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), lis.Addr().String())}, nil)
	a.export([]string{"inventory"}, "mesh-b")
	require.Eventually(t, func() bool { return a.status("mesh-b").Reconnects >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.NotEqual(t, peer.Connected, a.status("mesh-b").State)
	assert.Contains(t, a.status("mesh-b").LastError, "handshake")
	select {
	case <-opened:
		t.Fatal("a stream reached the plaintext server")
	default:
	}
}

type plaintextServer struct {
	discoverypb.UnimplementedDiscoveryServiceServer
	opened chan struct{}
}

func (s *plaintextServer) EstablishStream(discoverypb.DiscoveryService_EstablishStreamServer) error {
	s.opened <- struct{}{}
	return nil
}

func TestContextTokenRequired(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	s := spec("mesh-a", p.td("mesh-a"), "")
	s.Context, s.RequireContext = "s3cret", true
	b := newAgent(t, "mesh-b", p, []peer.Spec{s}, nil)
	b.export([]string{"payments"}, "mesh-a")

	// A wrong token is refused, and the refusal says so; the dialer keeps
	// trying, since the peer may change the token it requires.
	wrong := spec("mesh-b", p.td("mesh-b"), b.addr)
	wrong.Context = "guess"
	a := newAgent(t, "mesh-a", p, []peer.Spec{wrong}, nil)
	require.Eventually(t, func() bool {
		st := a.status("mesh-b")
		return st.State == peer.Refused && st.Reconnects >= 3
	}, 10*time.Second, 10*time.Millisecond)
	st := a.status("mesh-b")
	require.Equal(t, peer.ContextRefused, st.Refusal.Kind)
	require.False(t, st.Refusal.Final)
	require.Contains(t, st.LastError, "code = Unauthenticated desc = context: the opening request does not carry this peer's token")
	assert.Empty(t, a.importedIDs("mesh-b"))

	// mesh-b takes the token mesh-a sends: the next retry gets in.
	s.Context = "guess"
	require.NoError(t, b.manager.SetPeers([]peer.Spec{s}))
	a.eventuallyImports("mesh-b", "payments")
	require.Nil(t, a.status("mesh-b").Refusal, "a stream is up: the refusal is over")
}

// A workload's valid SVID of the peer's trust domain is not the peer's
// agent: it is refused in the handshake, gets nothing, and leaves the
// agent's stream in place. Only anyIdInTrustDomain lets it in.
func TestRefusesWorkloadOfPeersTrustDomainAsItsAgent(t *testing.T) {
	const workload = "/ns/default/sa/random-workload"
	t.Run("exact agent id", func(t *testing.T) {
		p := newPKI(t, "mesh-a", "mesh-b")
		b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
		b.export([]string{"payments"}, "mesh-a")
		a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), b.addr)}, nil)
		a.eventuallyImports("mesh-b", "payments")

		_, err := openStream(t, b.addr, credentials.NewTLS(p.tlsAs(t, "mesh-a", workload).ClientConfig(tlsconfig.AuthorizeAny())))
		require.Error(t, err)
		assert.Equal(t, codes.Unavailable, status.Code(err))
		st := b.status("mesh-a")
		assert.Equal(t, peer.Connected, st.State)
		assert.Equal(t, "spiffe://mesh-a.example/meshfed/agent", st.Identity, "the agent's stream is still the one in place")
	})
	t.Run("anyIdInTrustDomain", func(t *testing.T) {
		p := newPKI(t, "mesh-a", "mesh-b")
		s := spec("mesh-a", p.td("mesh-a"), "")
		s.AnyIDInTrustDomain = true
		b := newAgent(t, "mesh-b", p, []peer.Spec{s}, nil)
		b.export([]string{"payments"}, "mesh-a")
		m, err := openStream(t, b.addr, credentials.NewTLS(p.tlsAs(t, "mesh-a", workload).ClientConfig(tlsconfig.AuthorizeAny())))
		require.NoError(t, err)
		assert.Equal(t, "payments", m.GetResponse().GetResourceId())
	})
}

func TestManagerRefusesPeersItCannotTellApart(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	anyID := func(s peer.Spec) peer.Spec { s.AnyIDInTrustDomain = true; return s }
	ids := func(s peer.Spec, ids ...string) peer.Spec { s.SPIFFEIDs = ids; return s }
	for _, tc := range []struct {
		name  string
		specs []peer.Spec
		want  string
	}{
		{"same agent id", []peer.Spec{spec("one", "mesh-a.example", ""), spec("two", "mesh-a.example", "")},
			`peers "one" and "two" both accept spiffe://mesh-a.example/meshfed/agent as their agent`},
		{"same trust domain, any id", []peer.Spec{anyID(spec("one", "mesh-a.example", "")), anyID(spec("two", "mesh-a.example", ""))},
			`peers "one" and "two" share trust domain "mesh-a.example": list spiffeIds for each`},
		{"both rules", []peer.Spec{ids(anyID(spec("one", "mesh-a.example", "")), "spiffe://mesh-a.example/x")},
			`peer "one": spiffeIds and anyIdInTrustDomain exclude each other`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := peer.NewManager(peer.Config{Catalog: newCatalog(t), TLS: p.tls(t, "mesh-b"), Window: config.DefaultWindow, Grace: config.DefaultGrace, MaxBatch: config.DefaultMaxBatch}, tc.specs)
			require.EqualError(t, err, tc.want)
		})
	}
	// Exact ids tell two peers of one trust domain apart.
	_, err := peer.NewManager(peer.Config{Catalog: newCatalog(t), TLS: p.tls(t, "mesh-b"), Window: config.DefaultWindow, Grace: config.DefaultGrace, MaxBatch: config.DefaultMaxBatch},
		[]peer.Spec{ids(spec("one", "mesh-a.example", ""), "spiffe://mesh-a.example/one"), ids(spec("two", "mesh-a.example", ""), "spiffe://mesh-a.example/two")})
	require.NoError(t, err)
}
