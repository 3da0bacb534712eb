package session

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/validate"
)

// consumer takes in what the peer publishes: validated, stored, then
// acknowledged.
type consumer struct {
	o   Options
	out chan<- *discoverypb.BidirectionalStream

	// mu orders catalog writes against stop: once stop returns, this
	// session changes nothing more.
	mu      sync.Mutex
	stopped bool
	// seen holds what the peer sent since the stream began, until the
	// deletion reconciliation that follows its full catalog.
	seen       map[string]struct{}
	reconciled bool
	grace      *time.Timer
}

func newConsumer(o Options, out chan<- *discoverypb.BidirectionalStream) *consumer {
	return &consumer{o: o, out: out, seen: map[string]struct{}{}}
}

func (c *consumer) recv(ctx context.Context, s Stream, answers chan<- *discoverypb.StreamRequest) error {
	if c.o.Grace > 0 {
		c.mu.Lock()
		c.grace = time.AfterFunc(c.o.Grace, func() { c.reconcile("grace period ended") })
		c.mu.Unlock()
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		switch {
		case m.GetResponse() != nil:
			ack := c.consume(m.GetResponse())
			select {
			case c.out <- ack:
			case <-ctx.Done():
				return nil
			}
		case m.GetRequest().GetResponseNonce() != "":
			select {
			case answers <- m.GetRequest():
			case <-ctx.Done():
				return nil
			}
		default:
			// A repeated opening request carries nothing to act on.
		}
	}
}

func (c *consumer) consume(r *discoverypb.StreamResponse) *discoverypb.BidirectionalStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return ackOf(r, status.Error(codes.Unavailable, "stream is closing"), c.o.Context)
	}
	if r.GetResourceUrl() == SyncCompleteURL {
		c.reconcileLocked("peer sent its full catalog")
		return ackOf(r, nil, c.o.Context)
	}
	err := c.apply(r)
	c.o.Metrics.received(c.o.Peer, r.GetOperation(), status.Code(err))
	if err == nil {
		c.o.Exchanged()
	} else {
		c.o.Log.Warn("rejected a service from peer", zap.String("peer", c.o.Peer), zap.String("resourceId", r.GetResourceId()),
			zap.Stringer("code", status.Code(err)), zap.String("reason", status.Convert(err).Message()))
	}
	return ackOf(r, err, c.o.Context)
}

func (c *consumer) apply(r *discoverypb.StreamResponse) error {
	p, ok := c.o.Catalog.Peer(c.o.Peer)
	if !ok {
		return status.Errorf(codes.PermissionDenied, "peer %q is no longer configured", c.o.Peer)
	}
	op, svc, err := validate.Response(r, p.Policy)
	id := r.GetResourceId()
	if op == discoverypb.StreamResponse_UPSERT && id != "" && !c.reconciled {
		// Even a rejected entry is one the peer has: its last good
		// version must survive the reconciliation.
		c.seen[id] = struct{}{}
	}
	if err != nil {
		return err
	}
	if op == discoverypb.StreamResponse_DELETE {
		if !c.reconciled {
			delete(c.seen, id)
		}
		return c.o.Catalog.Delete(c.o.Peer, id)
	}
	return c.o.Catalog.Upsert(c.o.Peer, id, svc, r.GetResource().GetValue())
}

func (c *consumer) reconcile(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.reconcileLocked(why)
	}
}

func (c *consumer) reconcileLocked(why string) {
	if c.reconciled {
		return
	}
	c.reconciled = true
	if c.grace != nil {
		c.grace.Stop()
	}
	removed, err := c.o.Catalog.Reconcile(c.o.Peer, c.seen)
	c.seen = nil
	if err != nil {
		c.o.Log.Error("reconciling deletions", zap.String("peer", c.o.Peer), zap.Error(err))
		return
	}
	c.o.Log.Info("reconciled imports with the peer's catalog", zap.String("peer", c.o.Peer),
		zap.String("why", why), zap.Int("removed", removed))
}

func (c *consumer) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.grace != nil {
		c.grace.Stop()
	}
}
