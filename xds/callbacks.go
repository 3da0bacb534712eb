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
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
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
// requests and responses to know what every gateway runs.
type tracker struct {
	nodeRole cache.NodeRole
	metrics  *metrics
	applied  appliedAter
	log      *zap.Logger
	now      func() time.Time

	// channel and authorize are set before the server serves.
	channel   Channel
	authorize func(id spiffeid.ID, nodeID string) error

	// maxPerNode bounds the open streams that name one node id.
	maxPerNode int

	mu sync.Mutex
	// streams is keyed by kind too: go-control-plane numbers state of the
	// world and delta streams separately, both from 1.
	streams map[streamKey]*client
	// perNode counts the open streams admitted for each node id.
	perNode map[string]int
}

type streamKey struct {
	delta bool
	id    int64
}

type client struct {
	status ClientStatus
	role   model.Role // "" while unknown
	types  map[string]*typeTrack
	// id is the SPIFFE ID of a stream over mutual TLS, addr its address.
	id   spiffeid.ID
	addr string
}

type typeTrack struct {
	status TypeStatus
	// sent remembers the versions of the last responses by nonce, to know
	// which version a delta ACK or any NACK is about.
	sent []sentVersion
}

type sentVersion struct{ nonce, version string }

// sentMemory bounds sent: a gateway answers each response before the next
// of its type is sent, so a few suffice.
const sentMemory = 4

const unknownRole = "unknown"

var _ serverv3.Callbacks = (*tracker)(nil)

func newTracker(nodeRole cache.NodeRole, m *metrics, applied appliedAter, log *zap.Logger, maxPerNode int) *tracker {
	return &tracker{nodeRole: nodeRole, metrics: m, applied: applied, log: log, now: time.Now, maxPerNode: maxPerNode,
		streams: make(map[streamKey]*client), perNode: make(map[string]int)}
}

func (t *tracker) open(ctx context.Context, k streamKey) error {
	kind := "sotw"
	if k.delta {
		kind = "delta"
	}
	c := &client{
		status: ClientStatus{StreamID: k.id, Gateway: Gateway{Stream: kind, ConnectedAt: t.now(), Channel: string(t.channel)}},
		types:  make(map[string]*typeTrack),
		addr:   remoteAddr(ctx),
	}
	if t.channel == ChannelMTLS {
		id, ok := peerID(ctx)
		if !ok {
			// The TLS configuration requires an SVID: only a misconfigured
			// server gets here.
			return status.Error(codes.Unauthenticated, "xds: the client presented no SPIFFE ID")
		}
		c.id, c.status.SPIFFEID = id, id.String()
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
	if node := c.status.NodeID; node != "" {
		if t.perNode[node]--; t.perNode[node] <= 0 {
			delete(t.perNode, node)
		}
	}
	for typeURL := range c.types {
		t.metrics.clients.WithLabelValues(c.status.Role, typeLabel(typeURL)).Dec()
	}
}

// request records a request; version is what an ACK acknowledges ("" to
// look it up by nonce). A stream over mutual TLS whose gateway may not use
// the node id it names ends with PermissionDenied.
func (t *tracker) request(k streamKey, node *core.Node, typeURL, nonce, version string, errorDetail *rpcstatus.Status) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.streams[k]
	if !ok {
		return nil
	}
	if c.status.NodeID == "" && node.GetId() != "" {
		if err := t.authorizeNode(c, node.GetId()); err != nil {
			return err
		}
		if err := t.admitLocked(c, node.GetId()); err != nil {
			return err
		}
		c.status.NodeID = node.GetId()
		c.status.Role = unknownRole
		if role, ok := t.nodeRole(node.GetId()); ok {
			c.role, c.status.Role = role, string(role)
		}
	}
	tt, ok := c.types[typeURL]
	if !ok {
		tt = &typeTrack{status: TypeStatus{TypeURL: typeURL}}
		c.types[typeURL] = tt
		t.metrics.clients.WithLabelValues(c.status.Role, typeLabel(typeURL)).Inc()
	}
	if nonce == "" {
		return nil
	}
	sent := tt.forget(nonce)
	now := t.now()
	if errorDetail != nil {
		tt.status.LastNack = &Nack{Version: sent, Nonce: nonce, Reason: errorDetail.GetMessage(), At: now}
		t.metrics.nacks.WithLabelValues(c.status.Role, typeLabel(typeURL)).Inc()
		t.log.Warn("gateway rejected configuration",
			zap.String("node_id", c.status.NodeID), zap.String("role", c.status.Role),
			zap.String("type_url", typeURL), zap.String("version", sent),
			zap.String("nonce", nonce), zap.String("error", errorDetail.GetMessage()))
		return nil
	}
	if version == "" {
		version = sent
	}
	if version == "" || version == tt.status.AckedVersion {
		return nil
	}
	tt.status.AckedVersion, tt.status.AckedAt = version, now
	if t.applied != nil && c.role != "" {
		if at, ok := t.applied.AppliedAt(c.role, typeURL, version); ok {
			t.metrics.latency.WithLabelValues(c.status.Role, typeLabel(typeURL)).Observe(now.Sub(at).Seconds())
		}
	}
	return nil
}

// authorizeNode refuses a node id to a gateway over mutual TLS whose
// identity may not use it.
func (t *tracker) authorizeNode(c *client, nodeID string) error {
	if t.channel != ChannelMTLS {
		return nil
	}
	err := t.authorize(c.id, nodeID)
	if err == nil {
		return nil
	}
	t.metrics.refused.Inc()
	t.log.Warn("xDS client refused: its identity may not use the node id it asked for",
		zap.String("spiffe_id", c.id.String()), zap.String("node_id", nodeID), zap.String("remote_addr", c.addr), zap.Error(err))
	return status.Errorf(codes.PermissionDenied, "xds: %s may not use node id %q: %v", c.id, nodeID, err)
}

// admitLocked counts a stream for its node id, or refuses it when the node
// has as many streams open as it may.
func (t *tracker) admitLocked(c *client, nodeID string) error {
	if n := t.perNode[nodeID]; t.maxPerNode > 0 && n >= t.maxPerNode {
		t.metrics.overNode.Inc()
		t.log.Warn("xDS stream refused: its node id has as many streams open as it may",
			zap.String("node_id", nodeID), zap.Int("open", n), zap.String("remote_addr", c.addr), zap.String("spiffe_id", c.status.SPIFFEID))
		return status.Errorf(codes.ResourceExhausted, "xds: node id %q has %d streams open, the most it may", nodeID, n)
	}
	t.perNode[nodeID]++
	return nil
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
// older: the gateway answered it.
func (tt *typeTrack) forget(nonce string) string {
	for i, s := range tt.sent {
		if s.nonce == nonce {
			tt.sent = slices.Delete(tt.sent, 0, i+1)
			return s.version
		}
	}
	return ""
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
	// A state-of-the-world ACK carries the version it acknowledges.
	return t.request(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail())
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
	return t.request(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetErrorDetail())
}

func (t *tracker) OnStreamDeltaResponse(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	t.response(streamKey{delta: true, id: id}, req.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

func (t *tracker) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error { return nil }

func (t *tracker) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}
