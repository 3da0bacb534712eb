// Package session runs one Hamlet stream with one peer: it publishes the
// services exported to the peer and consumes the services the peer
// publishes, both on the same bidirectional stream.
package session

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/wire"
)

// SyncCompleteURL is the resource_url of the marker a publisher sends after
// its initial catalog, to peers that advertised sync-complete.
const SyncCompleteURL = "type.meshfed.io/meshfed.SyncComplete"

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
	// Grace is how long after the stream starts a peer without sync-complete
	// has to send its full catalog before what it did not send is deleted.
	Grace time.Duration
	// RetryNack is how long to wait before resending a service the peer
	// NACKed with Unavailable.
	RetryNack time.Duration
	// Exchanged is called once, after the first ACK in either direction.
	Exchanged func()
	Log       *zap.Logger
	Metrics   *Metrics
}

// Run runs the session until the stream or ctx ends. The opening request
// has already been exchanged. It returns the error that ended the stream.
func Run(ctx context.Context, s Stream, o Options) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if o.RetryNack == 0 {
		o.RetryNack = time.Second
	}
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
	p := newPublisher(o)
	c := newConsumer(o, p.out)
	// The receive goroutine is not waited for: it ends with the stream,
	// which the caller ends after Run returns. c.stop makes sure it no
	// longer touches the catalog by then.
	go func() { cancel(c.recv(ctx, s, p.answers)) }()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		cancel(p.run(ctx, s))
	}()
	go func() {
		defer wg.Done()
		caps, err := o.Remote()
		if err != nil {
			return
		}
		select {
		case p.caps <- Negotiate(o.Local, caps):
		case <-ctx.Done():
		}
	}()
	<-ctx.Done()
	c.stop()
	wg.Wait()
	err := context.Cause(ctx)
	if errors.Is(err, io.EOF) {
		return status.Error(codes.Unavailable, "peer closed the stream")
	}
	return err
}

// ackOf is this side's answer to r: an ACK when err is nil, else a NACK
// with err's code and message. An ACK's status is present with code OK:
// status.Convert(nil) is a nil *Status, and other implementations read
// status.code without a nil check.
func ackOf(r *discoverypb.StreamResponse, err error, ctxToken string) *discoverypb.BidirectionalStream {
	st := &spb.Status{Code: int32(codes.OK)}
	if err != nil {
		st = status.Convert(err).Proto()
	}
	return &discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{
		ResourceUrl:   r.GetResourceUrl(),
		ResponseNonce: r.GetNonce(),
		Status:        st,
		Context:       ctxToken,
	}}
}
