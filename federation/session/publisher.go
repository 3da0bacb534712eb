package session

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/wire"
)

// publisher sends the services exported to the peer. It is the only writer
// of the stream: the consumer's ACKs go out through it too.
type publisher struct {
	o       Options
	out     chan *discoverypb.BidirectionalStream // ACKs from the consumer
	answers chan *discoverypb.StreamRequest       // the peer's ACKs of ours
	caps    chan Capabilities
	// answerSent is told each time one of the consumer's answers went out.
	answerSent func()

	window int
	// syncComplete is nil until the peer's capabilities are known.
	syncComplete *bool
	queue        queue
	// markerDue: the initial catalog is queued ahead of the marker.
	markerDue bool
	inflight  map[string]sent
	published map[string]bool
	nonce     uint64
}

type sent struct {
	name   string
	marker bool
}

func newPublisher(o Options) *publisher {
	return &publisher{
		o:         o,
		out:       make(chan *discoverypb.BidirectionalStream, 64),
		answers:   make(chan *discoverypb.StreamRequest, 64),
		caps:      make(chan Capabilities, 1),
		window:    1,
		inflight:  map[string]sent{},
		published: map[string]bool{},
	}
}

func (p *publisher) run(ctx context.Context, s Stream) error {
	sub := p.o.Catalog.Subscribe()
	defer sub.Close()
	// Subscribed before listing, so nothing changes unseen in between.
	for _, name := range p.o.Catalog.ExportedTo(p.o.Peer) {
		p.queue.push(name)
	}
	p.markerDue = true
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	var retrying []string
	for {
		if err := p.fill(s); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case m := <-p.out:
			if err := s.Send(m); err != nil {
				return err
			}
			p.o.Activity.sentFrame()
			if p.answerSent != nil {
				p.answerSent()
			}
		case a := <-p.answers:
			if name, again := p.answered(a); again {
				if len(retrying) == 0 {
					retry.Reset(retryAfter)
				}
				retrying = append(retrying, name)
			}
		case c := <-p.caps:
			p.window = c.Window
			p.syncComplete = &c.SyncComplete
		case <-sub.C():
			for _, k := range sub.Drain() {
				if k.Kind == catalog.KindExport {
					p.queue.push(k.ID)
				}
			}
		case <-retry.C:
			for _, name := range retrying {
				p.queue.push(name)
			}
			retrying = retrying[:0]
		}
	}
}

// fill sends queued services while the window allows. The queue holds
// names, not versions: what is sent is the export's state at sending time,
// so a service that changed many times while a response was in flight costs
// one more response, carrying its latest state.
func (p *publisher) fill(s Stream) error {
	for len(p.inflight) < p.window {
		if p.queue.len() == 0 {
			if !p.markerDue || p.syncComplete == nil {
				return nil
			}
			p.markerDue = false
			if !*p.syncComplete {
				return nil
			}
			if err := p.send(s, sent{marker: true}, &discoverypb.StreamResponse{ResourceUrl: SyncCompleteURL}); err != nil {
				return err
			}
			continue
		}
		name := p.queue.pop()
		r, ok := p.response(name)
		if !ok {
			continue
		}
		if err := p.send(s, sent{name: name}, r); err != nil {
			return err
		}
	}
	return nil
}

func (p *publisher) response(name string) (*discoverypb.StreamResponse, bool) {
	e, ok := p.o.Catalog.ExportFor(p.o.Peer, name)
	if !ok {
		if !p.published[name] {
			return nil, false
		}
		delete(p.published, name)
		p.o.Catalog.Withdrawn(p.o.Peer, name)
		return &discoverypb.StreamResponse{ResourceUrl: wire.TypeURL, ResourceId: name, Operation: discoverypb.StreamResponse_DELETE}, true
	}
	fs := wire.FromModel(wire.Advertise(e, p.o.Ingress()))
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fs)
	if err != nil {
		// A FederatedService built from validated exports always marshals.
		p.o.Log.Error("marshaling export", zap.String("service", name), zap.Error(err))
		return nil, false
	}
	p.published[name] = true
	return &discoverypb.StreamResponse{
		ResourceUrl: wire.TypeURL,
		ResourceId:  name,
		Resource:    &anypb.Any{TypeUrl: wire.TypeURL, Value: b},
		Operation:   discoverypb.StreamResponse_UPSERT,
	}, true
}

func (p *publisher) send(s Stream, what sent, r *discoverypb.StreamResponse) error {
	p.nonce++
	r.Nonce = strconv.FormatUint(p.nonce, 10)
	r.Context = p.o.Context
	if err := s.Send(&discoverypb.BidirectionalStream{Response: r}); err != nil {
		return err
	}
	p.inflight[r.Nonce] = what
	p.o.Activity.sentFrame()
	p.o.Metrics.sent(p.o.Peer, r.Operation)
	return nil
}

// answered handles the peer's ACK or NACK; it reports a service to send
// again later when the peer asked for that.
func (p *publisher) answered(a *discoverypb.StreamRequest) (retry string, again bool) {
	what, ok := p.inflight[a.GetResponseNonce()]
	if !ok {
		p.o.Log.Warn("peer answered an unknown nonce", zap.String("peer", p.o.Peer), zap.String("nonce", a.GetResponseNonce()))
		return "", false
	}
	delete(p.inflight, a.GetResponseNonce())
	code := codes.Code(a.GetStatus().GetCode())
	msg := a.GetStatus().GetMessage()
	p.o.Metrics.answered(p.o.Peer, code)
	if code == codes.OK {
		p.o.Exchanged()
	}
	if what.marker {
		return "", false
	}
	if _, still := p.o.Catalog.ExportFor(p.o.Peer, what.name); still {
		p.o.Catalog.Delivered(p.o.Peer, what.name, code, msg, time.Now())
	}
	if code == codes.OK {
		return "", false
	}
	p.o.Log.Warn("peer rejected a service", zap.String("peer", p.o.Peer), zap.String("service", what.name),
		zap.Stringer("code", code), zap.String("reason", msg))
	// Unavailable is the consumer's own trouble (its store, say): the same
	// input may pass later. Anything else stays rejected until it changes.
	return what.name, code == codes.Unavailable
}

// queue is a FIFO of distinct names.
type queue struct {
	items []string
	head  int
	in    map[string]struct{}
}

func (q *queue) push(name string) {
	if q.in == nil {
		q.in = map[string]struct{}{}
	}
	if _, ok := q.in[name]; ok {
		return
	}
	q.in[name] = struct{}{}
	q.items = append(q.items, name)
}

func (q *queue) pop() string {
	name := q.items[q.head]
	q.items[q.head] = ""
	q.head++
	// Compact, so that a queue that never empties under steady churn still
	// holds no more than its distinct names.
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 64 && q.head > len(q.items)/2 {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
	delete(q.in, name)
	return name
}

func (q *queue) len() int { return len(q.items) - q.head }
