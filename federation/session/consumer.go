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
	// remote is the peer's advertisement, read once for both directions.
	remote func() (Capabilities, error)

	// mu orders catalog writes against stop and against the grace timer:
	// once stop returns, this session changes nothing more, and a
	// reconciliation never runs in the middle of a response.
	mu      sync.Mutex
	stopped bool
	// caps is what both sides negotiated, once capsKnown.
	caps      Capabilities
	capsKnown bool
	// seen holds what the peer sent since the stream began, until the
	// deletion reconciliation that follows its full catalog.
	seen       map[string]struct{}
	reconciled bool
	// Without sync-complete, the full catalog is taken to have arrived once
	// the peer has been quiet for the grace period: nothing received since
	// last and no answer of ours still to send (the peer may be waiting
	// for it before it sends more).
	clock   clock
	grace   timer
	last    time.Time
	pending int
}

func newConsumer(o Options, out chan<- *discoverypb.BidirectionalStream, remote func() (Capabilities, error)) *consumer {
	clk := realClock
	if o.clock != nil {
		clk = *o.clock
	}
	return &consumer{o: o, out: out, remote: remote, seen: map[string]struct{}{}, clock: clk, last: clk.now()}
}

func (c *consumer) recv(ctx context.Context, s Stream, answers chan<- *discoverypb.StreamRequest) error {
	for {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		c.o.Activity.received()
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

// negotiated records what both sides agreed on. Without sync-complete the
// grace timer starts now, counting the quiet time since the last response
// (or the stream's start); with it, the timer is never armed.
func (c *consumer) negotiated(caps Capabilities) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.negotiatedLocked(caps)
}

func (c *consumer) negotiatedLocked(caps Capabilities) {
	if c.capsKnown {
		return
	}
	c.caps, c.capsKnown = caps, true
	c.o.Activity.negotiated(caps)
	if caps.SyncComplete || c.o.Grace <= 0 || c.reconciled || c.stopped {
		return
	}
	c.grace = c.clock.afterFunc(max(c.o.Grace-c.clock.now().Sub(c.last), 0), c.graceCheck)
}

// knowCaps makes sure the negotiation is known before a response is acted
// on. A response arrives after the peer's headers, so reading them no
// longer blocks.
func (c *consumer) knowCaps() {
	if c.capsKnown {
		return
	}
	remote, err := c.remote()
	if err != nil {
		return
	}
	c.negotiatedLocked(Negotiate(c.o.Local, remote))
}

func (c *consumer) consume(r *discoverypb.StreamResponse) *discoverypb.BidirectionalStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return ackOf(r, status.Error(codes.Unavailable, "stream is closing"), c.o.Context)
	}
	c.last = c.clock.now()
	c.pending++
	c.knowCaps()
	if r.GetResourceUrl() == SyncCompleteURL {
		return ackOf(r, c.syncComplete(), c.o.Context)
	}
	err := c.apply(r)
	c.o.Metrics.received(c.o.Peer, r.GetOperation(), status.Code(err))
	if err == nil {
		c.o.Exchanged()
	} else {
		c.rejected(r, err)
	}
	return ackOf(r, err, c.o.Context)
}

// syncComplete acts on the peer's end-of-catalog marker, if the stream
// negotiated it: from a peer that did not advertise the extension it is no
// reason to delete anything.
func (c *consumer) syncComplete() error {
	if !c.caps.SyncComplete {
		c.o.Metrics.unnegotiatedExt(c.o.Peer, "sync-complete")
		c.o.Log.Warn("ignored a sync-complete marker the stream did not negotiate", zap.String("peer", c.o.Peer))
		return status.Errorf(codes.InvalidArgument, "resource_url: %q is the sync-complete extension, which this stream did not negotiate; ignored", SyncCompleteURL)
	}
	c.o.Exchanged()
	c.reconcileLocked("peer sent its full catalog")
	return nil
}

func (c *consumer) rejected(r *discoverypb.StreamResponse, err error) {
	st := status.Convert(err)
	c.o.Log.Warn("rejected a service from peer", zap.String("peer", c.o.Peer), zap.String("resourceId", r.GetResourceId()),
		zap.Stringer("code", st.Code()), zap.String("reason", st.Message()))
	if id := r.GetResourceId(); id != "" {
		c.o.Catalog.Rejected(c.o.Peer, id, st.Code(), st.Message(), time.Now())
	}
}

// answered is called once an answer has gone out: the peer may send more
// now, and the quiet time counts from here.
func (c *consumer) answered() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending > 0 {
		c.pending--
	}
	c.last = c.clock.now()
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

// graceCheck runs when the grace period may have passed: it reconciles if
// the peer has been quiet that long, and otherwise waits for the rest.
func (c *consumer) graceCheck() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.reconciled {
		return
	}
	if c.pending > 0 {
		c.grace.Reset(c.o.Grace)
		return
	}
	if quiet := c.clock.now().Sub(c.last); quiet < c.o.Grace {
		c.grace.Reset(c.o.Grace - quiet)
		return
	}
	c.reconcileLocked("peer was quiet for the grace period")
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
	c.o.Metrics.reconciled(c.o.Peer, removed)
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
