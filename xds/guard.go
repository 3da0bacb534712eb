package xds

import (
	"context"
	"errors"
	"io"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// guard admits every xDS stream and holds it to what it was admitted as.
// It is a gRPC stream interceptor, so it reads each request before
// go-control-plane does, whatever the order inside it (in v0.14.0 the
// state-of-the-world server takes the node of any request that carries
// one as the stream's before the request callback runs, the delta server
// after it, and both build the request's watch from that node after the
// callback): a stream counts toward the server's and its identity's
// bounds from its start, go-control-plane sees nothing of a stream until
// its first request arrived and its node id was authorized, and a later
// request naming another node never reaches the cache.
type guard struct {
	limits  limits
	metrics *metrics
	log     *zap.Logger

	// channel, authorize and done are set before the server serves; done
	// ends the waits for first requests when the server stops.
	channel   Channel
	authorize func(id spiffeid.ID, nodeID string) error
	done      <-chan struct{}

	mu         sync.Mutex
	open       int
	identities map[spiffeid.ID]int
	nodes      map[string]int

	// warnings bounds the refusal warnings of all streams: a client makes
	// refusals as fast as it opens streams. The metrics count every one.
	warnings  *rate.Limiter
	logMu     sync.Mutex
	notLogged int
}

// limits are the bounds a guard holds streams to, defaults applied.
type limits struct {
	streams, perIdentity, perNode int
	firstRequest                  time.Duration
}

// Refusal warnings: a burst of them is logged whole (a fleet of gateways
// refused at once, each named), then one a second.
const (
	refusalLogBurst = 20
	refusalLogEvery = time.Second
)

func newGuard(l limits, m *metrics, log *zap.Logger) *guard {
	return &guard{limits: l, metrics: m, log: log,
		identities: make(map[spiffeid.ID]int), nodes: make(map[string]int),
		warnings: rate.NewLimiter(rate.Every(refusalLogEvery), refusalLogBurst)}
}

// binding is what a stream was admitted as: the SPIFFE ID of its client
// over mutual TLS, and the node id its first request named ("" when it
// named none), which every later request must name, or name no node.
type binding struct {
	id     spiffeid.ID
	addr   string
	nodeID string
	// counted is set once nodeID counts toward the node's bound.
	counted bool
}

type bindingKey struct{}

// bindingOf is the binding of an admitted stream, from its context.
func bindingOf(ctx context.Context) (*binding, bool) {
	b, ok := ctx.Value(bindingKey{}).(*binding)
	return b, ok
}

// stream is the interceptor of every xDS stream.
func (g *guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	b := &binding{addr: remoteAddr(ctx)}
	if g.channel == ChannelMTLS {
		id, ok := peerID(ctx)
		if !ok {
			// The TLS configuration requires an SVID: only a misconfigured
			// server gets here.
			return status.Error(codes.Unauthenticated, "xds: the client presented no SPIFFE ID")
		}
		b.id = id
	}
	if err := g.admit(b); err != nil {
		return err
	}
	defer g.release(b)
	first, err := g.firstRequest(ss, info.FullMethod, b)
	if first == nil || err != nil {
		return err
	}
	if err := g.bind(b, nodeOf(first)); err != nil {
		return err
	}
	gs := &guardedStream{ServerStream: ss, ctx: context.WithValue(ctx, bindingKey{}, b), g: g, b: b, first: first}
	err = handler(srv, gs)
	if refused := gs.refused.Load(); refused != nil {
		// go-control-plane ends a stream whose requests end without an
		// error of its own: the refusal is what the client is told.
		return *refused
	}
	return err
}

// admit counts a stream toward the server's bound and its identity's, or
// refuses it when either is reached.
func (g *guard) admit(b *binding) error {
	g.mu.Lock()
	if n := g.open; n >= g.limits.streams {
		g.mu.Unlock()
		g.metrics.overServer.Inc()
		g.warn("xDS stream refused: the server has as many streams open as it may",
			zap.Int("open", n), zap.String("remote_addr", b.addr), zap.Stringer("spiffe_id", b.id))
		return status.Errorf(codes.ResourceExhausted, "xds: the server has %d streams open, the most it may", n)
	}
	if !b.id.IsZero() {
		if n := g.identities[b.id]; n >= g.limits.perIdentity {
			g.mu.Unlock()
			g.metrics.overIdentity.Inc()
			g.warn("xDS stream refused: its identity has as many streams open as it may",
				zap.Stringer("spiffe_id", b.id), zap.Int("open", n), zap.String("remote_addr", b.addr))
			return status.Errorf(codes.ResourceExhausted, "xds: %s has %d streams open, the most it may", b.id, n)
		}
		g.identities[b.id]++
	}
	g.open++
	g.metrics.streams.Set(float64(g.open))
	g.mu.Unlock()
	return nil
}

func (g *guard) release(b *binding) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open--
	g.metrics.streams.Set(float64(g.open))
	if !b.id.IsZero() {
		if g.identities[b.id]--; g.identities[b.id] <= 0 {
			delete(g.identities, b.id)
		}
	}
	if b.counted {
		if g.nodes[b.nodeID]--; g.nodes[b.nodeID] <= 0 {
			delete(g.nodes, b.nodeID)
		}
	}
}

// firstRequest waits for the first request of a stream for as long as
// limits.firstRequest allows. It returns nil without an error when the
// stream or the server ended first.
func (g *guard) firstRequest(ss grpc.ServerStream, method string, b *binding) (proto.Message, error) {
	var req proto.Message = new(discovery.DiscoveryRequest)
	if strings.HasPrefix(path.Base(method), "Delta") {
		req = new(discovery.DeltaDiscoveryRequest)
	}
	// A receive cannot be interrupted but by ending the stream, which
	// returning does; the receiving goroutine then ends too.
	got := make(chan error, 1)
	go func() { got <- ss.RecvMsg(req) }()
	timer := time.NewTimer(g.limits.firstRequest)
	defer timer.Stop()
	select {
	case err := <-got:
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return req, err
	case <-g.done:
		return nil, nil
	case <-timer.C:
		g.metrics.noRequest.Inc()
		g.warn("xDS stream ended: it sent no request in time",
			zap.Duration("timeout", g.limits.firstRequest), zap.String("remote_addr", b.addr), zap.Stringer("spiffe_id", b.id))
		return nil, status.Errorf(codes.DeadlineExceeded, "xds: the stream sent no request within %s", g.limits.firstRequest)
	}
}

// bind authorizes the node id of a stream's first request to the
// stream's identity (over mutual TLS) and counts the stream toward the
// node's bound, or refuses it.
func (g *guard) bind(b *binding, node *core.Node) error {
	nodeID := node.GetId()
	if g.channel == ChannelMTLS {
		if err := g.authorize(b.id, nodeID); err != nil {
			g.metrics.refused.Inc()
			g.warn("xDS client refused: its identity may not use the node id it asked for",
				zap.Stringer("spiffe_id", b.id), zap.String("node_id", clip(nodeID)), zap.String("remote_addr", b.addr), zap.Error(err))
			return status.Errorf(codes.PermissionDenied, "xds: %s may not use node id %q: %v", b.id, clip(nodeID), err)
		}
	}
	g.mu.Lock()
	n := g.nodes[nodeID]
	if n < g.limits.perNode {
		g.nodes[nodeID]++
		b.nodeID, b.counted = nodeID, true
	}
	g.mu.Unlock()
	if !b.counted {
		g.metrics.overNode.Inc()
		g.warn("xDS stream refused: its node id has as many streams open as it may",
			zap.String("node_id", clip(nodeID)), zap.Int("open", n), zap.String("remote_addr", b.addr), zap.Stringer("spiffe_id", b.id))
		return status.Errorf(codes.ResourceExhausted, "xds: node id %q has %d streams open, the most it may", clip(nodeID), n)
	}
	return nil
}

// nodeChanged refuses a request that names another node than its
// stream's.
func (g *guard) nodeChanged(b *binding, nodeID string) error {
	g.metrics.nodeChanged.Inc()
	g.warn("xDS stream ended: a request named another node id than the stream's",
		zap.String("node_id", clip(b.nodeID)), zap.String("requested_node_id", clip(nodeID)),
		zap.String("channel", string(g.channel)), zap.Stringer("spiffe_id", b.id), zap.String("remote_addr", b.addr))
	return status.Errorf(codes.PermissionDenied, "xds: the stream's node id is %q; a request may not name %q", clip(b.nodeID), clip(nodeID))
}

// warn logs a refusal unless too many were logged lately; the next one
// logged says how many were not.
func (g *guard) warn(msg string, fields ...zap.Field) {
	g.logMu.Lock()
	if !g.warnings.Allow() {
		g.notLogged++
		g.logMu.Unlock()
		return
	}
	n := g.notLogged
	g.notLogged = 0
	g.logMu.Unlock()
	if n > 0 {
		fields = append(fields, zap.Int("refusals_not_logged", n))
	}
	g.log.Warn(msg, fields...)
}

// guardedStream is an admitted stream: its first request, already read,
// is handed to the server's first receive, and every later one must name
// the stream's node or none.
type guardedStream struct {
	grpc.ServerStream
	ctx context.Context
	g   *guard
	b   *binding
	// first is touched by the goroutine that receives only.
	first   proto.Message
	refused atomic.Pointer[error]
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if first := s.first; first != nil {
		s.first = nil
		if err := move(m, first); err != nil {
			s.refused.Store(&err)
			return err
		}
		return nil
	}
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if node := nodeOf(m); node != nil && node.GetId() != s.b.nodeID {
		err := s.g.nodeChanged(s.b, node.GetId())
		s.refused.Store(&err)
		return err
	}
	return nil
}

// nodeOf is the node a request names, nil when it names none.
func nodeOf(m any) *core.Node {
	if r, ok := m.(interface{ GetNode() *core.Node }); ok {
		return r.GetNode()
	}
	return nil
}

// move hands src's fields to dst, which the server allocated, without
// copying them: a first request may name 100,000 resources.
func move(dst any, src proto.Message) error {
	d, ok := dst.(proto.Message)
	if !ok || d.ProtoReflect().Descriptor() != src.ProtoReflect().Descriptor() {
		return status.Errorf(codes.Internal, "xds: the server reads %T, not the %T that was received", dst, src)
	}
	dm, sm := d.ProtoReflect(), src.ProtoReflect()
	sm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dm.Set(fd, v)
		return true
	})
	dm.SetUnknown(sm.GetUnknown())
	return nil
}
