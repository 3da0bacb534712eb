package xds

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot/cache"
)

// appliedAter is implemented by *cache.Cache.
type appliedAter interface {
	AppliedAt(role model.Role, typeURL, version string) (time.Time, bool)
}

// tracker implements the server callbacks: it follows each stream's
// requests and responses to know what every gateway runs. The guard has
// admitted a stream and bound its node before go-control-plane opens it.
type tracker struct {
	nodeRole cache.NodeRole
	metrics  *metrics
	applied  appliedAter
	log      *zap.Logger
	now      func() time.Time

	// channel is set before the server serves.
	channel Channel

	mu sync.Mutex
	// streams is keyed by kind too: go-control-plane numbers state of the
	// world and delta streams separately, both from 1.
	streams map[streamKey]*client
}

type streamKey struct {
	delta bool
	id    int64
}

type client struct {
	status ClientStatus
	role   model.Role // "" for a node that is none of the gateways
	types  map[string]*typeTrack
	// nackLog bounds the NACK warnings of the stream, made on its first
	// NACK; notLogged counts those it held back since the last one.
	nackLog   *rate.Limiter
	notLogged int
}

type typeTrack struct {
	status TypeStatus
	// sent remembers the versions of the responses not yet answered, by
	// nonce, to know which version an ACK or a NACK is about.
	sent []sentVersion
}

type sentVersion struct{ nonce, version string }

// sentMemory bounds sent: a gateway answers each response before the next
// of its type is sent, so a few suffice.
const sentMemory = 4

// NACK warnings of a stream: the first few are logged, then one every
// ten seconds, each saying how many were held back; nacks_total counts
// every NACK and the status keeps the last.
const (
	nackLogBurst = 5
	nackLogEvery = 10 * time.Second
)

const unknownRole = "unknown"

var _ serverv3.Callbacks = (*tracker)(nil)

func newTracker(nodeRole cache.NodeRole, m *metrics, applied appliedAter, log *zap.Logger) *tracker {
	return &tracker{nodeRole: nodeRole, metrics: m, applied: applied, log: log, now: time.Now,
		streams: make(map[streamKey]*client)}
}

func (t *tracker) open(ctx context.Context, k streamKey) error {
	b, ok := bindingOf(ctx)
	if !ok {
		return status.Error(codes.Internal, "xds: a stream the guard did not admit")
	}
	kind := "sotw"
	if k.delta {
		kind = "delta"
	}
	c := &client{
		status: ClientStatus{StreamID: k.id, Gateway: Gateway{
			NodeID: b.nodeID, Role: unknownRole, Stream: kind, ConnectedAt: t.now(), Channel: string(t.channel),
		}},
		types: make(map[string]*typeTrack),
	}
	if !b.id.IsZero() {
		c.status.SPIFFEID = b.id.String()
	}
	if role, ok := t.nodeRole(b.nodeID); ok {
		c.role, c.status.Role = role, string(role)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[k] = c
	return nil
}

func (t *tracker) closed(k streamKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.streams[k]
	if !ok {
		return
	}
	delete(t.streams, k)
	for typeURL := range c.types {
		t.metrics.clients.WithLabelValues(c.status.Role, typeLabel(typeURL)).Dec()
	}
}

// request records a request. An ACK or a NACK counts only when its nonce
// is one the server sent on the stream for that type and awaits an answer
// to; the version it is about is the one sent with that nonce.
func (t *tracker) request(k streamKey, typeURL, nonce string, errorDetail *rpcstatus.Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.streams[k]
	if !ok {
		return
	}
	tt, ok := c.types[typeURL]
	if !ok {
		tt = &typeTrack{status: TypeStatus{TypeURL: typeURL}}
		c.types[typeURL] = tt
		t.metrics.clients.WithLabelValues(c.status.Role, typeLabel(typeURL)).Inc()
	}
	sent, answered := tt.forget(nonce)
	if errorDetail != nil {
		if !answered {
			t.metrics.ignoredNacks.WithLabelValues(c.status.Role, typeLabel(typeURL)).Inc()
			return
		}
		t.nack(c, tt, sent, nonce, clip(errorDetail.GetMessage()))
		return
	}
	if !answered || sent == tt.status.AckedVersion {
		return
	}
	now := t.now()
	tt.status.AckedVersion, tt.status.AckedAt = sent, now
	if t.applied != nil && c.role != "" {
		if at, ok := t.applied.AppliedAt(c.role, typeURL, sent); ok {
			t.metrics.latency.WithLabelValues(c.status.Role, typeLabel(typeURL)).Observe(now.Sub(at).Seconds())
		}
	}
}

// nack records a NACK of a response the server sent, and warns of it
// unless the stream's warnings are held back.
func (t *tracker) nack(c *client, tt *typeTrack, version, nonce, reason string) {
	now := t.now()
	tt.status.LastNack = &Nack{Version: version, Nonce: nonce, Reason: reason, At: now}
	t.metrics.nacks.WithLabelValues(c.status.Role, typeLabel(tt.status.TypeURL)).Inc()
	if c.nackLog == nil {
		c.nackLog = rate.NewLimiter(rate.Every(nackLogEvery), nackLogBurst)
	}
	if !c.nackLog.AllowN(now, 1) {
		c.notLogged++
		return
	}
	fields := []zap.Field{zap.String("node_id", clip(c.status.NodeID)), zap.String("role", c.status.Role),
		zap.String("type_url", tt.status.TypeURL), zap.String("version", version), zap.String("nonce", nonce),
		zap.String("error", reason)}
	if c.notLogged > 0 {
		fields = append(fields, zap.Int("nacks_not_logged", c.notLogged))
		c.notLogged = 0
	}
	t.log.Warn("gateway rejected configuration", fields...)
}

func (t *tracker) response(k streamKey, typeURL, nonce, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.streams[k]
	if !ok {
		return
	}
	tt, ok := c.types[typeURL]
	if !ok {
		return // the server answers only types the stream requested
	}
	tt.status.SentVersion, tt.status.SentNonce, tt.status.SentAt = version, nonce, t.now()
	if len(tt.sent) == sentMemory {
		tt.sent = slices.Delete(tt.sent, 0, 1)
	}
	tt.sent = append(tt.sent, sentVersion{nonce, version})
}

// forget returns the version sent with nonce and drops it and anything
// older: the gateway answered it. ok is false for a nonce that awaits no
// answer: never sent for the type, answered already, or none.
func (tt *typeTrack) forget(nonce string) (version string, ok bool) {
	if nonce == "" {
		return "", false
	}
	for i, s := range tt.sent {
		if s.nonce == nonce {
			tt.sent = slices.Delete(tt.sent, 0, i+1)
			return s.version, true
		}
	}
	return "", false
}

func (t *tracker) snapshot() []ClientStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ClientStatus, 0, len(t.streams))
	for _, c := range t.streams {
		s := c.status
		s.Types = make([]TypeStatus, 0, len(c.types))
		for _, tt := range c.types {
			ts := tt.status
			if ts.LastNack != nil {
				n := *ts.LastNack
				ts.LastNack = &n
			}
			s.Types = append(s.Types, ts)
		}
		slices.SortFunc(s.Types, func(a, b TypeStatus) int { return strings.Compare(a.TypeURL, b.TypeURL) })
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ClientStatus) int {
		return cmp.Or(strings.Compare(a.Stream, b.Stream), cmp.Compare(a.StreamID, b.StreamID))
	})
	return out
}

func (t *tracker) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return t.open(ctx, streamKey{id: id})
}

func (t *tracker) OnStreamClosed(id int64, _ *core.Node) { t.closed(streamKey{id: id}) }

func (t *tracker) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	t.request(streamKey{id: id}, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

func (t *tracker) OnStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	t.response(streamKey{id: id}, req.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (t *tracker) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return t.open(ctx, streamKey{delta: true, id: id})
}

func (t *tracker) OnDeltaStreamClosed(id int64, _ *core.Node) {
	t.closed(streamKey{delta: true, id: id})
}

func (t *tracker) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	t.request(streamKey{delta: true, id: id}, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

func (t *tracker) OnStreamDeltaResponse(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	t.response(streamKey{delta: true, id: id}, req.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

func (t *tracker) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error { return nil }

func (t *tracker) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}
