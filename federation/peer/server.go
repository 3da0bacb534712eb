package peer

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/session"
	"github.com/meshfed/meshfed/federation/wire"
)

// DefaultKeepaliveEnforcement is how often a peer may ping this agent. At
// least one known Hamlet client pings every 20 s, also without a stream,
// and does not reconnect after a GOAWAY; gRPC clients cannot ping more
// often than every 10 s. Half that leaves room for timer jitter.
func DefaultKeepaliveEnforcement() keepalive.EnforcementPolicy {
	return keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}
}

// The listener's bounds before authentication: each can be configured
// (federation.handshakeTimeout, maxHandshakes, maxHandshakesPerSource).
const (
	// DefaultHandshakeTimeout is how long a connection has to finish its
	// TLS and HTTP/2 handshakes, and then a stream to bring its opening
	// request. Mutual TLS 1.3 and the HTTP/2 prefaces take about three
	// round trips: under a second across continents, with room for a
	// loaded host and a lost packet or two. gRPC's own default is 120 s,
	// which let idle connections pile up by the thousand.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxHandshakes is how many connections may be in their TLS
	// handshake at once, from all sources. A federation has tens of
	// peers, each with one connection; even a hundred redialing at once
	// after a restart fit, while the file descriptors and memory a flood
	// can take stay small.
	DefaultMaxHandshakes = 256
	// DefaultMaxHandshakesPerSource is the same from one IPv4 address or
	// IPv6 /64: room for peers behind one NAT, and an eighth of the
	// listener for one attacker.
	DefaultMaxHandshakesPerSource = 32
)

// The listener's bounds on what an authenticated peer may ask.
const (
	// MaxStreamsPerConnection: a peer needs one stream; a redial on the
	// same connection may open the next before this agent has seen the
	// old one end, and a few more leave room without letting one
	// connection hold thousands.
	MaxStreamsPerConnection = 4
	// MaxHeaderListBytes bounds the headers of a stream: an opening
	// carries a dozen short ones. Twice the 8 KiB that grpc-java and
	// gRPC-Go's coming default allow, which every Hamlet client must
	// already fit; gRPC-Go's current default is 16 MiB.
	MaxHeaderListBytes = 16 << 10
	// MaxMessageBytes bounds one message, either way: the largest
	// response validation accepts (every field of a FederatedService at
	// its limit, validate.DefaultLimits) is about 5.8 MB, over gRPC's
	// 4 MiB default; 8 MiB holds it with room for a longer nonce or
	// context.
	MaxMessageBytes = 8 << 20
)

// NewServer is the gRPC server that accepts Hamlet streams. Only mutual TLS
// is offered: the handshake already refuses a client whose certificate no
// configured peer may present. Before that, connections are bounded in
// time and number (handshakes); after it, in streams, headers and message
// size.
func (m *Manager) NewServer() *grpc.Server {
	s := grpc.NewServer(
		grpc.Creds(newRecordingCreds(m.cfg.TLS.ServerConfig(m.authorizeAny), m.handshakes, m.refusedConn, m.cutConn)),
		grpc.ConnectionTimeout(m.cfg.HandshakeTimeout),
		grpc.MaxConcurrentStreams(MaxStreamsPerConnection),
		grpc.MaxHeaderListSize(MaxHeaderListBytes),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(m.cfg.KeepaliveEnforcement),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	)
	discoverypb.RegisterDiscoveryServiceServer(s, &server{m: m})
	return s
}

// authorizeAny accepts the identities of the peers that connect to this
// agent. Its error says why, for the log of the refused handshake.
func (m *Manager) authorizeAny(id spiffeid.ID, chains [][]*x509.Certificate) error {
	if _, r := m.peerFor(id, chains); r != nil {
		return r
	}
	return nil
}

// peerFor is the peer that id authenticates, or why there is none.
func (m *Manager) peerFor(id spiffeid.ID, chains [][]*x509.Certificate) (*peerRun, *refusal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var match *peerRun
	var refused error
	for _, name := range m.order {
		p := m.peers[name]
		if err := p.authorize(id, chains); err != nil {
			if refused == nil && id.TrustDomain().Name() == p.spec.TrustDomain {
				refused = err
			}
			continue
		}
		// An exact SPIFFE ID beats a trust domain match.
		if match == nil || !p.spec.AnyIDInTrustDomain {
			match = p
		}
	}
	switch {
	case match == nil && refused != nil:
		return nil, &refusal{IdentityNotAccepted, refused.Error()}
	case match == nil:
		return nil, &refusal{NotAPeer, fmt.Sprintf("%s is not a peer of this agent: no peer of trust domain %q is in its configuration (not added yet, or removed); the next stream after a reload that adds it is accepted",
			id, id.TrustDomain().Name())}
	case match.spec.Dial != "":
		return nil, &refusal{DialsToo, fmt.Sprintf("peer %q is dialed by this agent, not accepted: one of the two must stop dialing (peers[].dial)", match.spec.Name)}
	}
	return match, nil
}

type server struct {
	discoverypb.UnimplementedDiscoveryServiceServer
	m *Manager
}

func (s *server) EstablishStream(stream discoverypb.DiscoveryService_EstablishStreamServer) error {
	ctx := stream.Context()
	id, chains, err := callerID(ctx)
	if err != nil {
		return err
	}
	p, r := s.m.peerFor(id, chains)
	if r != nil {
		// Reached on a connection authorized before a reload removed or
		// changed the peer: a new one is refused in its handshake.
		s.m.refusedConn(remoteAddr(ctx), id, r.Error())
		return r.status()
	}
	local := s.m.capabilities()
	if err := stream.SendHeader(local.MD()); err != nil {
		return err
	}
	open, err := s.m.openingRequest(stream)
	if err != nil {
		return err
	}
	req := open.GetRequest()
	if req == nil || req.GetResponseNonce() != "" {
		return status.Error(codes.InvalidArgument, "the first message of a stream must be an opening request")
	}
	if req.GetResourceUrl() != wire.TypeURL {
		return status.Errorf(codes.InvalidArgument, "resource_url: %q is not %q", req.GetResourceUrl(), wire.TypeURL)
	}
	if p.spec.RequireContext && subtle.ConstantTimeCompare([]byte(req.GetContext()), []byte(p.spec.Context)) != 1 {
		r := &refusal{ContextRefused, "context: the opening request does not carry this peer's token (peers[].context)"}
		s.m.refusedConn(remoteAddr(ctx), id, r.Error())
		return r.status()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	remote := session.ParseCapabilities(md)
	sctx, end, err := s.m.begin(ctx, p, id)
	if err != nil {
		return err
	}
	err = session.Run(sctx, stream, s.m.sessionOptions(p, req.GetContext(), local,
		func() (session.Capabilities, error) { return remote, nil }, nil))
	if ctx.Err() == nil && sctx.Err() != nil {
		// This side ended the stream (replaced, reconfigured, shutting
		// down): the cause says why, with the code the peer acts on.
		err = context.Cause(sctx)
	}
	end(err)
	return err
}

// openingRequest waits for a stream's first message for at most
// HandshakeTimeout: until then the stream holds a goroutine and one of its
// connection's streams without having said what it wants.
func (m *Manager) openingRequest(stream discoverypb.DiscoveryService_EstablishStreamServer) (*discoverypb.BidirectionalStream, error) {
	type received struct {
		msg *discoverypb.BidirectionalStream
		err error
	}
	got := make(chan received, 1)
	// Once the handler has returned, gRPC cancels the stream and this
	// Recv returns.
	go func() {
		msg, err := stream.Recv()
		got <- received{msg, err}
	}()
	t := time.NewTimer(m.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case r := <-got:
		return r.msg, r.err
	case <-t.C:
		m.sampled.Warn("a Hamlet stream brought no opening request in time; ended", zap.String("remote", remoteAddr(stream.Context()).String()),
			zap.Duration("handshake_timeout", m.cfg.HandshakeTimeout))
		return nil, status.Errorf(codes.DeadlineExceeded, "no opening request within %s (federation.handshakeTimeout) of the stream's start", m.cfg.HandshakeTimeout)
	}
}

func remoteAddr(ctx context.Context) net.Addr {
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		return pr.Addr
	}
	return unknownAddr{}
}

type unknownAddr struct{}

func (unknownAddr) Network() string { return "tcp" }
func (unknownAddr) String() string  { return "unknown" }

func callerID(ctx context.Context) (spiffeid.ID, [][]*x509.Certificate, error) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, nil, status.Error(codes.Unauthenticated, "no client certificate")
	}
	id, err := x509svid.IDFromCert(info.State.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, nil, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	return id, info.State.VerifiedChains, nil
}
