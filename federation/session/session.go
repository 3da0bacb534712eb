// Package session runs one Hamlet stream with one peer: it publishes the
// services exported to the peer and consumes the services the peer
// publishes, both on the same bidirectional stream.
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/internal/untrusted"
)

// SyncCompleteURL is the resource_url of the marker a publisher sends after
// its initial catalog, to peers that advertised sync-complete.
const SyncCompleteURL = "type.meshfed.io/meshfed.SyncComplete"

// retryAfter is how long a service the peer NACKed with Unavailable waits
// before it is sent again: Hamlet's least backoff.
const retryAfter = time.Second

// Stream is one side of an EstablishStream call: the client and the server
// stream types of the generated code both satisfy it.
type Stream interface {
	Send(*discoverypb.BidirectionalStream) error
	Recv() (*discoverypb.BidirectionalStream, error)
}

// Options configure a session.
type Options struct {
	Peer    string
	Catalog *catalog.Catalog
	// Ingress is this mesh's current ingress advertisement.
	Ingress func() wire.Ingress
	// Context is put in every response (and ACK) this side sends.
	Context string
	// Local is what this side advertised.
	Local Capabilities
	// Remote blocks until the peer's advertisement is known. A dialing side
	// learns it from the response headers, which a peer may send late.
	Remote func() (Capabilities, error)
	// Grace is how long a peer without a negotiated sync-complete must have
	// been quiet (nothing received, nothing of ours unanswered), counted from
	// its last response or the stream's start, before its catalog is taken
	// as complete and what it did not resend is deleted. With sync-complete
	// negotiated only the peer's marker ends the catalog; 0 never deletes.
	Grace time.Duration
	// MaxBatch is how many services one store transaction holds at most,
	// at least 1. A response's services are stored together, so
	// Local.ServicesPerResponse is at most MaxBatch.
	MaxBatch int
	// BatchDelay is how long a batch may wait for more responses the
	// peer may still send, within its window; 0 never waits. A batch
	// otherwise holds what arrived while the transaction before it was
	// written.
	BatchDelay time.Duration
	// Exchanged is called once, after the first ACK in either direction.
	Exchanged func()
	// Activity records the session's last frames and negotiation; may be
	// nil.
	Activity *Activity
	Log      *zap.Logger
	Metrics  *Metrics

	// clock replaces the real one in tests.
	clock *clock
}

// CheckLimits refuses the bounds a session cannot run with: Options.MaxBatch,
// Options.BatchDelay and Local.ServicesPerResponse. The caller gives every
// value (package config holds their defaults).
func CheckLimits(maxBatch int, batchDelay time.Duration, servicesPerResponse int) error {
	switch {
	case maxBatch < 1:
		return fmt.Errorf("session: maxBatch %d: a transaction holds at least one service", maxBatch)
	case batchDelay < 0:
		return fmt.Errorf("session: batchDelay %s is negative (0 never waits)", batchDelay)
	case servicesPerResponse < 0 || servicesPerResponse > maxBatch:
		return fmt.Errorf("session: servicesPerResponse %d is out of range 0-%d (maxBatch): a response's services are stored in one transaction", servicesPerResponse, maxBatch)
	}
	return nil
}

// check refuses options a session cannot run with.
func (o Options) check() error {
	switch {
	case o.Catalog == nil:
		return errors.New("session: no catalog")
	case o.Ingress == nil:
		return errors.New("session: no ingress")
	case o.Remote == nil:
		return errors.New("session: no way to read the peer's capabilities (Remote)")
	case o.Log == nil:
		return errors.New("session: no logger")
	case o.Grace < 0:
		return fmt.Errorf("session: grace %s is negative", o.Grace)
	case o.Local.Window < 0 || o.Local.Window > maxWindow:
		return fmt.Errorf("session: window %d is out of range 0-%d", o.Local.Window, maxWindow)
	}
	return CheckLimits(o.MaxBatch, o.BatchDelay, o.Local.ServicesPerResponse)
}

// Run runs the session until the stream or ctx ends. The opening request
// has already been exchanged. It returns the error that ended the stream,
// or why o cannot run one.
func Run(ctx context.Context, s Stream, o Options) error {
	if err := o.check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var once sync.Once
	exchanged := o.Exchanged
	o.Exchanged = func() {
		if exchanged != nil {
			once.Do(exchanged)
		}
	}
	if err := o.Catalog.MarkStale(o.Peer, time.Time{}); err != nil {
		return status.Errorf(codes.Unavailable, "store: %v", err)
	}
	// Both directions read the peer's advertisement: once.
	remote := sync.OnceValues(o.Remote)
	p := newPublisher(o)
	c := newConsumer(o, p.out, remote)
	p.answerSent = c.answered
	// The receive and commit goroutines are not waited for: they end with
	// the stream, which the caller ends after Run returns, and with ctx.
	// c.stop makes sure they no longer touch the catalog by then.
	go func() { cancel(c.recv(ctx, s, p.answers)) }()
	go c.commit(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		cancel(p.run(ctx, s))
	}()
	go func() {
		defer wg.Done()
		caps, err := remote()
		if err != nil {
			return
		}
		neg := Negotiate(o.Local, caps)
		c.negotiated(neg)
		select {
		case p.caps <- neg:
		case <-ctx.Done():
		}
	}()
	<-ctx.Done()
	c.stop()
	wg.Wait()
	o.Activity.Ended()
	err := context.Cause(ctx)
	if errors.Is(err, io.EOF) {
		return status.Error(codes.Unavailable, "peer closed the stream")
	}
	return err
}

// ackOf is this side's answer to r: an ACK when err is nil, else a NACK
// with err's code and message.
func ackOf(r *discoverypb.StreamResponse, err error, ctxToken string) *discoverypb.BidirectionalStream {
	return answer(r, statusOf(err), ctxToken)
}

// statusOf is err as the status of an answer. For nil it is present with
// code OK: status.Convert(nil) is a nil *Status, and other implementations
// read status.code without a nil check.
func statusOf(err error) *spb.Status {
	if err == nil {
		return &spb.Status{Code: int32(codes.OK)}
	}
	return status.Convert(err).Proto()
}

func answer(r *discoverypb.StreamResponse, st *spb.Status, ctxToken string) *discoverypb.BidirectionalStream {
	return &discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{
		ResourceUrl:   r.GetResourceUrl(),
		ResponseNonce: r.GetNonce(),
		Status:        st,
		Context:       ctxToken,
	}}
}

// batchAnswer is the answer to batch r, whose services entries had the
// outcomes errs: an ACK when every one is stored. Otherwise it has the
// code of the first refused, names it, and holds the status of each
// service, in order, in its details, so that the publisher learns which
// were stored.
func batchAnswer(r *discoverypb.StreamResponse, entries []*discoverypb.StreamResponse, errs []error, ctxToken string) *discoverypb.BidirectionalStream {
	first, refused := -1, 0
	for i, err := range errs {
		if err != nil {
			refused++
			if first < 0 {
				first = i
			}
		}
	}
	if refused == 0 {
		return ackOf(r, nil, ctxToken)
	}
	st := statusOf(errs[first])
	st.Message = fmt.Sprintf("%d of %d services refused; the first, %s: %s", refused, len(errs),
		untrusted.Quote(entries[first].GetResourceId()), st.GetMessage())
	st.Details = make([]*anypb.Any, len(errs))
	for i, err := range errs {
		one := statusOf(err)
		d, aerr := anypb.New(one)
		if aerr != nil {
			// A message that does not marshal still leaves its code.
			d, _ = anypb.New(&spb.Status{Code: one.GetCode()})
		}
		st.Details[i] = d
	}
	return answer(r, st, ctxToken)
}
