package session

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/federation/wire"
)

// consumer takes in what the peer publishes: validated, stored, then
// acknowledged.
//
// Group commit: the receive loop only hands responses to the commit loop,
// which takes every response that has arrived (up to MaxBatch services),
// waits up to BatchDelay for the rest of a negotiated window, and stores
// them in one transaction; their answers go out, in order, once it is on
// disk. A response thus waits at most for the transaction in progress when
// it arrived plus BatchDelay, and a peer with a window of n gets its n
// responses stored with one fsync instead of n. A response of several
// services (services-per-response) is never split across transactions.
type consumer struct {
	o   Options
	out chan<- *discoverypb.BidirectionalStream
	// queue holds the responses received and not yet stored.
	queue chan *discoverypb.StreamResponse
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
	clock clock
	grace timer
	// window is the negotiated window once known, else 0; the commit
	// loop reads it without mu.
	window atomic.Int64
	// quiet guards last and pending apart from mu, so that the receive
	// loop never waits for a store write. Lock order: mu, then quiet.
	quiet   sync.Mutex
	last    time.Time
	pending int
}

// quietSince is when the peer last sent something or was last answered,
// and how many of its responses are still to answer.
func (c *consumer) quietSince() (time.Time, int) {
	c.quiet.Lock()
	defer c.quiet.Unlock()
	return c.last, c.pending
}

func newConsumer(o Options, out chan<- *discoverypb.BidirectionalStream, remote func() (Capabilities, error)) *consumer {
	clk := realClock
	if o.clock != nil {
		clk = *o.clock
	}
	return &consumer{o: o, out: out, queue: make(chan *discoverypb.StreamResponse, o.MaxBatch), remote: remote,
		seen: map[string]struct{}{}, clock: clk, last: clk.now()}
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
			c.received()
			select {
			case c.queue <- m.GetResponse():
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
	c.window.Store(int64(caps.Window))
	c.o.Activity.negotiated(caps)
	if caps.SyncComplete || c.o.Grace <= 0 || c.reconciled || c.stopped {
		return
	}
	last, _ := c.quietSince()
	c.grace = c.clock.afterFunc(max(c.o.Grace-c.clock.now().Sub(last), 0), c.graceCheck)
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

// received counts a response as one to answer, from the moment it arrives.
func (c *consumer) received() {
	c.quiet.Lock()
	defer c.quiet.Unlock()
	c.last = c.clock.now()
	c.pending++
}

// txn is the responses one transaction stores: at most max services.
type txn struct {
	rs       []*discoverypb.StreamResponse
	services int
	max      int
	// next is the response that did not fit, which opens the next one.
	next *discoverypb.StreamResponse
}

// add takes r, unless it would bring the transaction over max services:
// then r is kept as next.
func (t *txn) add(r *discoverypb.StreamResponse) {
	n := servicesIn(r, t.max)
	if len(t.rs) > 0 && t.services+n > t.max {
		t.next = r
		return
	}
	t.rs = append(t.rs, r)
	t.services += n
}

func (t *txn) full() bool { return t.next != nil || t.services >= t.max }

// servicesIn is how many services r would store: a batch's count, or 1
// for anything else and for a batch that will be refused whole (a
// negotiated batch holds at most MaxBatch, see CheckLimits).
func servicesIn(r *discoverypb.StreamResponse, most int) int {
	if r.GetResourceUrl() != wire.BatchURL {
		return 1
	}
	if n, err := wire.BatchLen(r); err == nil && n >= 1 && n <= most {
		return n
	}
	return 1
}

// commit stores what the receive loop queued, a batch at a time, and sends
// the answers once their batch is durable.
func (c *consumer) commit(ctx context.Context) {
	t := txn{rs: make([]*discoverypb.StreamResponse, 0, c.o.MaxBatch), max: c.o.MaxBatch}
	for {
		first := t.next
		clear(t.rs)
		t.rs, t.services, t.next = t.rs[:0], 0, nil
		if first == nil {
			select {
			case first = <-c.queue:
			case <-ctx.Done():
				return
			}
		}
		t.add(first)
	more:
		for !t.full() {
			select {
			case r := <-c.queue:
				t.add(r)
			default:
				break more
			}
		}
		c.linger(ctx, &t)
		for _, ack := range c.consume(t.rs) {
			select {
			case c.out <- ack:
			case <-ctx.Done():
				return
			}
		}
	}
}

// linger adds to t the responses that arrive within BatchDelay, while it
// is short of MaxBatch services and of the negotiated window: up to a
// window, the peer may still send some (those whose ACKs are on their way
// free its window again). With the specification's one in flight it never
// waits.
func (c *consumer) linger(ctx context.Context, t *txn) {
	if c.o.BatchDelay <= 0 || !c.mayGrow(t) {
		return
	}
	timer := time.NewTimer(c.o.BatchDelay)
	defer timer.Stop()
	for c.mayGrow(t) {
		select {
		case r := <-c.queue:
			t.add(r)
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (c *consumer) mayGrow(t *txn) bool {
	return !t.full() && int64(len(t.rs)) < c.window.Load()
}

// consume acts on a batch of responses, in order, and returns their
// answers. The responses between two sync-complete markers are stored in
// one transaction; a marker acts on everything before it.
func (c *consumer) consume(batch []*discoverypb.StreamResponse) []*discoverypb.BidirectionalStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	acks := make([]*discoverypb.BidirectionalStream, len(batch))
	if c.stopped {
		for i, r := range batch {
			acks[i] = ackOf(r, status.Error(codes.Unavailable, "stream is closing"), c.o.Context)
		}
		return acks
	}
	c.knowCaps()
	start := 0
	for i, r := range batch {
		if r.GetResourceUrl() != SyncCompleteURL {
			continue
		}
		c.applyRun(batch[start:i], acks[start:i])
		acks[i] = ackOf(r, c.syncComplete(), c.o.Context)
		start = i + 1
	}
	c.applyRun(batch[start:], acks[start:])
	return acks
}

// applyRun stores the services of rs (responses of one service, and
// batches of several) in one transaction, once validated, and puts the
// answer to each rs[i] in acks[i].
func (c *consumer) applyRun(rs []*discoverypb.StreamResponse, acks []*discoverypb.BidirectionalStream) {
	if len(rs) == 0 {
		return
	}
	// entries are the services of rs in order; entries[k] is rs[of[k]]'s.
	// A batch refused whole has none, and its error in whole.
	entries := make([]*discoverypb.StreamResponse, 0, len(rs))
	of := make([]int, 0, len(rs))
	whole := make([]error, len(rs))
	for i, r := range rs {
		if r.GetResourceUrl() != wire.BatchURL {
			entries, of = append(entries, r), append(of, i)
			continue
		}
		es, err := c.unbatch(r)
		if err != nil {
			whole[i] = err
			continue
		}
		for _, e := range es {
			entries, of = append(entries, e), append(of, i)
		}
	}
	errs := c.apply(entries)
	k := 0
	for i, r := range rs {
		if whole[i] != nil {
			c.o.Metrics.received(c.o.Peer, r.GetOperation(), status.Code(whole[i]))
			c.rejected(r, whole[i])
			acks[i] = ackOf(r, whole[i], c.o.Context)
			continue
		}
		from := k
		for k < len(of) && of[k] == i {
			k++
		}
		if r.GetResourceUrl() == wire.BatchURL {
			acks[i] = batchAnswer(r, entries[from:k], errs[from:k], c.o.Context)
		} else {
			acks[i] = ackOf(r, errs[from], c.o.Context)
		}
	}
}

// apply validates the services rs, stores what passes in one transaction,
// and returns the outcome of each.
func (c *consumer) apply(rs []*discoverypb.StreamResponse) []error {
	errs := make([]error, len(rs))
	changes := make([]catalog.ImportChange, 0, len(rs))
	of := make([]int, 0, len(rs)) // changes[k] is rs[of[k]]'s
	p, configured := c.o.Catalog.Peer(c.o.Peer)
	for i, r := range rs {
		if !configured {
			errs[i] = status.Errorf(codes.PermissionDenied, "peer %q is no longer configured", c.o.Peer)
			continue
		}
		ch, err := c.change(r, p.Policy)
		if err != nil {
			errs[i] = err
			continue
		}
		changes = append(changes, ch)
		of = append(of, i)
	}
	if len(changes) > 0 {
		for k, err := range c.o.Catalog.Apply(c.o.Peer, changes) {
			errs[of[k]] = err
		}
	}
	for i, r := range rs {
		err := errs[i]
		c.o.Metrics.received(c.o.Peer, r.GetOperation(), status.Code(err))
		if err == nil {
			c.o.Exchanged()
		} else {
			c.rejected(r, err)
		}
	}
	return errs
}

// unbatch is the services of batch r, if the stream negotiated batches and
// r holds no more than negotiated: from a peer that did not advertise the
// extension it is refused whole.
func (c *consumer) unbatch(r *discoverypb.StreamResponse) ([]*discoverypb.StreamResponse, error) {
	if c.caps.ServicesPerResponse <= 1 {
		c.o.Metrics.unnegotiatedExt(c.o.Peer, "services-per-response")
		c.o.Log.Warn("refused a batch of services the stream did not negotiate", zap.String("peer", c.o.Peer))
		return nil, status.Errorf(codes.InvalidArgument, "resource_url: %q is the services-per-response extension, which this stream did not negotiate; ignored", wire.BatchURL)
	}
	es, err := wire.Unbatch(r, c.caps.ServicesPerResponse)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return es, nil
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
	c.quiet.Lock()
	defer c.quiet.Unlock()
	if c.pending > 0 {
		c.pending--
	}
	c.last = c.clock.now()
}

// change is the catalog change r asks for, once validated.
func (c *consumer) change(r *discoverypb.StreamResponse, policy validate.Policy) (catalog.ImportChange, error) {
	op, svc, err := validate.Response(r, policy)
	id := r.GetResourceId()
	if op == discoverypb.StreamResponse_UPSERT && id != "" && !c.reconciled {
		// Even a rejected entry is one the peer has: its last good
		// version must survive the reconciliation.
		c.seen[id] = struct{}{}
	}
	if err != nil {
		return catalog.ImportChange{}, err
	}
	if op == discoverypb.StreamResponse_DELETE {
		if !c.reconciled {
			delete(c.seen, id)
		}
		return catalog.ImportChange{ID: id, Delete: true}, nil
	}
	return catalog.ImportChange{ID: id, Service: svc, Raw: r.GetResource().GetValue()}, nil
}

// graceCheck runs when the grace period may have passed: it reconciles if
// the peer has been quiet that long, and otherwise waits for the rest.
func (c *consumer) graceCheck() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.reconciled {
		return
	}
	last, pending := c.quietSince()
	if pending > 0 {
		c.grace.Reset(c.o.Grace)
		return
	}
	if quiet := c.clock.now().Sub(last); quiet < c.o.Grace {
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
