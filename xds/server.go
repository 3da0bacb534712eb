package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/meshfed/meshfed/internal/handshake"
	"github.com/meshfed/meshfed/snapshot/cache"
)

// Config configures a Server. Cache and NodeRole are required.
type Config struct {
	// Cache is what the gateways are served, usually a *cache.Cache. When it
	// also reports when versions were applied (AppliedAt, as *cache.Cache
	// does) the push latency is measured.
	Cache gcache.Cache
	// NodeRole maps node ids to roles for status and metric labels; it
	// should be the one the cache uses.
	NodeRole cache.NodeRole
	// Address for ListenAndServe: host:port or unix:///path.
	Address string
	// TLS, when set, is used for every TCP connection, and must require and
	// verify a client certificate (mutual TLS): the gateway's SPIFFE ID is
	// what AuthorizeNode decides on. Without TLS, a TCP listener must be on
	// loopback and serves no private key (Channel).
	TLS *tls.Config
	// AuthorizeNode says whether the gateway with a SPIFFE ID may use a
	// node id, on a mutual TLS listener; required with TLS. A refused
	// stream ends with PermissionDenied.
	AuthorizeNode func(id spiffeid.ID, nodeID string) error
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// Registerer receives the metrics; none are registered when nil.
	Registerer prometheus.Registerer
	// The bounds below are required (package config sizes their
	// defaults); New refuses a zero one.
	//
	// MaxRecvMsgSize bounds one request: a larger one ends its stream with
	// ResourceExhausted.
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds the streams of one connection. A client
	// waits for a stream to end before it may open another (gRPC's HTTP/2
	// limit); one that opens more anyway has them refused.
	MaxConcurrentStreams uint32
	// MaxStreamsPerNode bounds the open streams that name one node id,
	// over all connections. A further stream for that node ends with
	// ResourceExhausted at its first request.
	MaxStreamsPerNode int
	// MaxStreamsPerIdentity bounds the open streams of one SPIFFE ID over
	// mutual TLS, over all connections, from their start. A further stream
	// ends with ResourceExhausted before it is read.
	MaxStreamsPerIdentity int
	// MaxStreams bounds the open streams of the server, from their start.
	// A further stream ends with ResourceExhausted before it is read.
	MaxStreams int
	// FirstRequestTimeout ends a stream that sent no request that long
	// after its start, with DeadlineExceeded.
	FirstRequestTimeout time.Duration
	// HandshakeTimeout bounds a connection's TLS and HTTP/2 handshakes.
	// With TLS, MaxHandshakes bounds the connections in their TLS
	// handshake at once, not yet authenticated, and
	// MaxHandshakesPerSource those of one IPv4 address or IPv6 /64: over
	// either, the oldest is closed (handshake.Gate). Required with TLS.
	HandshakeTimeout                      time.Duration
	MaxHandshakes, MaxHandshakesPerSource int
	// ConnectAuthorize, when set, answers the gateways' authorization
	// requests for Consul Connect callers (Envoy's ext_authz).
	ConnectAuthorize ConnectAuthorizer
}

// keepaliveMinTime is the shortest client keepalive interval accepted, a
// client that pings more often is sent GOAWAY: below Envoy's usual
// keepalive settings, so that a gateway never is.
const keepaliveMinTime = 15 * time.Second

// Server is the ADS server of the mesh's gateways.
type Server struct {
	cfg     Config
	gate    *handshake.Gate
	log     *zap.Logger
	clients *tracker
	guard   *guard
	metrics *metrics
	served  atomic.Bool
}

// New returns a Server and registers its metrics.
func New(cfg Config) (*Server, error) {
	if cfg.Cache == nil || cfg.NodeRole == nil {
		return nil, errors.New("xds: Cache and NodeRole are required")
	}
	if cfg.TLS != nil && cfg.AuthorizeNode == nil {
		return nil, errors.New("xds: AuthorizeNode is required with TLS")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	type bound struct {
		field string
		value int64
	}
	bounds := []bound{
		{"MaxRecvMsgSize", int64(cfg.MaxRecvMsgSize)},
		{"MaxConcurrentStreams", int64(cfg.MaxConcurrentStreams)},
		{"MaxStreamsPerNode", int64(cfg.MaxStreamsPerNode)},
		{"MaxStreamsPerIdentity", int64(cfg.MaxStreamsPerIdentity)},
		{"MaxStreams", int64(cfg.MaxStreams)},
		{"FirstRequestTimeout", int64(cfg.FirstRequestTimeout)},
	}
	if cfg.TLS != nil {
		bounds = append(bounds, bound{"HandshakeTimeout", int64(cfg.HandshakeTimeout)},
			bound{"MaxHandshakes", int64(cfg.MaxHandshakes)}, bound{"MaxHandshakesPerSource", int64(cfg.MaxHandshakesPerSource)})
	}
	for _, b := range bounds {
		if b.value <= 0 {
			return nil, fmt.Errorf("xds: %s is %d; it must be positive", b.field, b.value)
		}
	}
	m := newMetrics(cfg.Registerer)
	applied, _ := cfg.Cache.(appliedAter)
	// Without TLS the gate is never used, but its metrics are there to
	// read, zero.
	gate := handshake.NewGate(cfg.MaxHandshakes, cfg.MaxHandshakesPerSource)
	handshakeMetrics(cfg.Registerer, gate)
	return &Server{
		cfg:     cfg,
		gate:    gate,
		log:     cfg.Logger,
		clients: newTracker(cfg.NodeRole, m, applied, cfg.Logger),
		metrics: m,
		guard: newGuard(limits{streams: cfg.MaxStreams, perIdentity: cfg.MaxStreamsPerIdentity, perNode: cfg.MaxStreamsPerNode,
			firstRequest: cfg.FirstRequestTimeout}, m, cfg.Logger),
	}, nil
}

// ListenAndServe listens on the configured address and serves; see Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	lis, err := Listen(s.cfg.Address)
	if err != nil {
		return err
	}
	return s.Serve(ctx, lis)
}

// Serve serves xDS on lis until ctx is done, then closes the streams and
// returns nil. It may be called once.
//
// Call it only after the first full Apply of the restored state to the cache:
// a gateway that reconnects must find the configuration it had, never an
// empty or smaller one. The cache holds back the watches of a role until its
// first Apply as a second guard, but only serving after it also keeps
// readiness honest.
func (s *Server) Serve(parent context.Context, lis net.Listener) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("xds: Serve called twice")
	}
	channel, err := channelOf(lis, s.cfg.TLS != nil)
	if err != nil {
		return err
	}
	s.clients.channel = channel
	cache := s.cfg.Cache
	if kl, ok := cache.(interface{ Keyless() gcache.Cache }); ok && channel == ChannelPlaintext {
		cache = kl.Keyless()
		s.log.Warn("serving xDS in plaintext on loopback: gateways get no SVID private key here; use a Unix socket or mutual TLS (xds.listen, xds.tls)",
			zap.Stringer("address", lis.Addr()))
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	s.guard.channel, s.guard.authorize, s.guard.done = channel, s.cfg.AuthorizeNode, ctx.Done()
	opts := []grpc.ServerOption{
		grpc.StreamInterceptor(s.guard.stream),
		// gRPC's 32 KiB read buffer is most of what an idle connection
		// costs (49 KB of heap with it, 15 KB without): frames are read
		// from the connection itself, which TLS buffers by the record
		// anyway.
		grpc.ReadBufferSize(0),
		grpc.MaxConcurrentStreams(s.cfg.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(s.cfg.MaxRecvMsgSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if channel == ChannelMTLS {
		opts = append(opts,
			grpc.Creds(gatedCreds{TransportCredentials: credentials.NewTLS(s.cfg.TLS), gate: s.gate, cut: s.cutConn}),
			grpc.ConnectionTimeout(s.cfg.HandshakeTimeout))
	}
	gs := grpc.NewServer(opts...)
	xs := serverv3.NewServer(ctx, cache, s.clients)
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xs)
	routeservice.RegisterScopedRoutesDiscoveryServiceServer(gs, xs)
	secretservice.RegisterSecretDiscoveryServiceServer(gs, xs)
	if a := s.cfg.ConnectAuthorize; a != nil {
		authv3.RegisterAuthorizationServer(gs, newConnectAuthz(a, s.metrics, s.log))
	}

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		// The xDS handlers return once ctx is done, so a graceful stop
		// finishes; the timer only guards against a stuck connection.
		t := time.AfterFunc(5*time.Second, gs.Stop)
		gs.GracefulStop()
		t.Stop()
	}()
	s.log.Info("serving xDS", zap.Stringer("address", lis.Addr()), zap.String("channel", string(channel)))
	err = gs.Serve(lis)
	cancel()
	<-stopped
	if parent.Err() != nil {
		return nil
	}
	return err
}

// Clients returns the state of every connected xDS stream, ordered by stream.
func (s *Server) Clients() []ClientStatus { return s.clients.snapshot() }
