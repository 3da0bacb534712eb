package session

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
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
	// perResponse is how many services one response may carry.
	perResponse int
	// syncComplete is nil until the peer's capabilities are known.
	syncComplete *bool
	queue        queue
	// markerDue: the initial catalog is queued ahead of the marker.
	markerDue bool
	inflight  map[string]sent
	published map[string]bool
	nonce     uint64
}

// sent is what a response in flight carried: the services it named, in
// order, or the sync-complete marker.
type sent struct {
	names  []string
	marker bool
}

// batchBytes bounds the services of one response beyond its first: a
// batch stays well under the 4 MiB a gRPC peer accepts by default (an
// agent takes 8 MiB, peer.MaxMessageBytes), and a larger service still
// goes, alone.
const batchBytes = 1 << 20

func newPublisher(o Options) *publisher {
	return &publisher{
		o:           o,
		out:         make(chan *discoverypb.BidirectionalStream, 64),
		answers:     make(chan *discoverypb.StreamRequest, 64),
		caps:        make(chan Capabilities, 1),
		window:      1,
		perResponse: 1,
		inflight:    map[string]sent{},
		published:   map[string]bool{},
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
		// The peer's capabilities come first once known: an answer that
		// frees the window is then answered with a full response.
		select {
		case c := <-p.caps:
			p.negotiated(c)
		default:
		}
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
			if again := p.answered(a); len(again) > 0 {
				if len(retrying) == 0 {
					retry.Reset(retryAfter)
				}
				retrying = append(retrying, again...)
			}
		case c := <-p.caps:
			p.negotiated(c)
		case <-sub.C():
			for _, k := range sub.Drain() {
				if k.Kind == model.KindExport {
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

func (p *publisher) negotiated(c Capabilities) {
	p.window, p.perResponse = c.Window, c.ServicesPerResponse
	p.syncComplete = &c.SyncComplete
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
			m := &discoverypb.StreamResponse{ResourceUrl: SyncCompleteURL}
			if err := p.send(s, sent{marker: true}, m); err != nil {
				return err
			}
			p.o.Metrics.sent(p.o.Peer, m.Operation)
			continue
		}
		names, rs := p.pack()
		var r *discoverypb.StreamResponse
		switch len(rs) {
		case 0:
			continue
		case 1:
			// One service goes as the specification has it.
			r = rs[0]
		default:
			var err error
			if r, err = wire.Batch(rs); err != nil {
				// Responses built from validated exports always marshal.
				p.o.Log.Error("marshaling a batch", zap.Strings("services", names), zap.Error(err))
				continue
			}
		}
		if err := p.send(s, sent{names: names}, r); err != nil {
			return err
		}
		for _, r := range rs {
			p.o.Metrics.sent(p.o.Peer, r.Operation)
		}
	}
	return nil
}

// pack takes from the queue the services of the next response: up to
// perResponse of them, and beyond the first no more than batchBytes.
func (p *publisher) pack() (names []string, rs []*discoverypb.StreamResponse) {
	size := 0
	for p.queue.len() > 0 && len(rs) < max(p.perResponse, 1) {
		name := p.queue.peek()
		r, ok := p.response(name)
		if !ok {
			p.queue.pop()
			continue
		}
		n := wire.BatchEntrySize(r)
		if len(rs) > 0 && size+n > batchBytes {
			// It heads the next response, built afresh then.
			break
		}
		p.queue.pop()
		p.publishing(name, r)
		names, rs, size = append(names, name), append(rs, r), size+n
	}
	return names, rs
}

// response is what tells the peer the current state of name: an UPSERT of
// the export, a DELETE of one published before, or nothing.
func (p *publisher) response(name string) (*discoverypb.StreamResponse, bool) {
	e, ok := p.o.Catalog.ExportFor(p.o.Peer, name)
	if !ok {
		if !p.published[name] {
			return nil, false
		}
		return &discoverypb.StreamResponse{ResourceUrl: wire.TypeURL, ResourceId: name, Operation: discoverypb.StreamResponse_DELETE}, true
	}
	fs := wire.FromModel(wire.Advertise(e, p.o.Ingress()))
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fs)
	if err != nil {
		// A FederatedService built from validated exports always marshals.
		p.o.Log.Error("marshaling export", zap.String("service", name), zap.Error(err))
		return nil, false
	}
	return &discoverypb.StreamResponse{
		ResourceUrl: wire.TypeURL,
		ResourceId:  name,
		Resource:    &anypb.Any{TypeUrl: wire.TypeURL, Value: b},
		Operation:   discoverypb.StreamResponse_UPSERT,
	}, true
}

// publishing records that r, about name, is on its way.
func (p *publisher) publishing(name string, r *discoverypb.StreamResponse) {
	if r.Operation == discoverypb.StreamResponse_DELETE {
		delete(p.published, name)
		p.o.Catalog.Withdrawn(p.o.Peer, name)
		return
	}
	p.published[name] = true
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
	return nil
}

// answered handles the peer's ACK or NACK; it returns the services to send
// again later, as the peer asked.
func (p *publisher) answered(a *discoverypb.StreamRequest) (retry []string) {
	what, ok := p.inflight[a.GetResponseNonce()]
	if !ok {
		p.o.Log.Warn("peer answered an unknown nonce", zap.String("peer", p.o.Peer), zap.String("nonce", a.GetResponseNonce()))
		return nil
	}
	delete(p.inflight, a.GetResponseNonce())
	if what.marker {
		code := codes.Code(a.GetStatus().GetCode())
		p.o.Metrics.answered(p.o.Peer, code)
		if code == codes.OK {
			p.o.Exchanged()
		}
		return nil
	}
	for i, st := range outcomes(a.GetStatus(), len(what.names)) {
		name, code, msg := what.names[i], codes.Code(st.GetCode()), st.GetMessage()
		p.o.Metrics.answered(p.o.Peer, code)
		if code == codes.OK {
			p.o.Exchanged()
		}
		if _, still := p.o.Catalog.ExportFor(p.o.Peer, name); still {
			p.o.Catalog.Delivered(p.o.Peer, name, code, msg, time.Now())
		}
		if code == codes.OK {
			continue
		}
		p.o.Log.Warn("peer rejected a service", zap.String("peer", p.o.Peer), zap.String("service", name),
			zap.Stringer("code", code), zap.String("reason", msg))
		// Unavailable is the consumer's own trouble (its store, say): the
		// same input may pass later. Anything else stays rejected until it
		// changes.
		if code == codes.Unavailable {
			retry = append(retry, name)
		}
	}
	return retry
}

// outcomes is the answer st of a response that carried n services, for
// each of them. OK means every one is stored. Otherwise a batch's answer
// holds a status per service in its details; without them (a batch
// refused whole) or for a single service, st is each one's.
func outcomes(st *spb.Status, n int) []*spb.Status {
	out := make([]*spb.Status, n)
	details := st.GetDetails()
	perService := n > 1 && codes.Code(st.GetCode()) != codes.OK && len(details) == n
	for i := range out {
		out[i] = st
		if !perService {
			continue
		}
		var one spb.Status
		// One that cannot be read keeps the batch's code: not stored.
		if err := details[i].UnmarshalTo(&one); err == nil {
			out[i] = &one
		}
	}
	return out
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

// peek is the name pop would return.
func (q *queue) peek() string { return q.items[q.head] }

func (q *queue) len() int { return len(q.items) - q.head }
