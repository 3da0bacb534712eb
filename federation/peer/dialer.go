package peer

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/session"
	"github.com/meshfed/meshfed/federation/wire"
)

// dialKeepalive pings an idle connection every minute and never without a
// stream: a known Hamlet server closes connections that ping more often
// than every 40 s.
var dialKeepalive = keepalive.ClientParameters{Time: time.Minute, Timeout: 20 * time.Second}

func (m *Manager) dialLoop(ctx context.Context, p *peerRun) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = m.cfg.MinBackoff
	b.MaxInterval = m.cfg.MaxBackoff
	b.MaxElapsedTime = 0
	b.RandomizationFactor = 0.5
	b.Reset()
	// A peer's answers are bounded as its requests are when it dials.
	conn, err := grpc.NewClient(p.spec.Dial,
		grpc.WithTransportCredentials(credentials.NewTLS(m.cfg.TLS.ClientConfig(p.authorize))),
		grpc.WithKeepaliveParams(dialKeepalive),
		grpc.WithMaxHeaderListSize(MaxHeaderListBytes),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes)),
	)
	if err != nil {
		m.setState(p, Failed, err)
		m.log.Error("peer address is unusable", zap.String("peer", p.spec.Name), zap.String("dial", p.spec.Dial), zap.Error(err))
		return
	}
	defer conn.Close()
	for {
		m.setState(p, Connecting, nil)
		exchanged := false
		before := p.activity.LastReceived()
		err := m.dialOnce(ctx, conn, p, func() { exchanged = true })
		if ctx.Err() != nil {
			return
		}
		if p.activity.LastReceived().Equal(before) {
			// Nothing came from the peer: the connection failed
			// before it was one.
			err = m.explain(p, err)
		}
		if code := status.Code(err); code == codes.Unauthenticated || code == codes.PermissionDenied {
			m.setState(p, Failed, err)
			m.log.Error("peer refused this agent; not retrying", zap.String("peer", p.spec.Name), zap.Error(err))
			return
		}
		if exchanged {
			b.Reset()
		}
		wait := b.NextBackOff()
		m.mu.Lock()
		p.status.Reconnects++
		next := time.Now().Add(wait)
		p.status.NextRetry = &next
		m.mu.Unlock()
		m.setState(p, Backoff, err)
		m.log.Warn("peer stream failed; retrying", zap.String("peer", p.spec.Name), zap.Duration("in", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (m *Manager) dialOnce(ctx context.Context, conn *grpc.ClientConn, p *peerRun, exchanged func()) error {
	local := m.capabilities()
	sctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, local.MD()))
	defer cancel()
	stream, err := discoverypb.NewDiscoveryServiceClient(conn).EstablishStream(sctx)
	if err != nil {
		return err
	}
	open := &discoverypb.StreamRequest{ResourceUrl: wire.TypeURL, Context: p.spec.Context}
	if err := stream.Send(&discoverypb.BidirectionalStream{Request: open}); err != nil {
		return recvErr(stream, err)
	}
	// The handshake authorized the server; this names it for the status.
	id, _, err := callerID(stream.Context())
	if err != nil {
		return err
	}
	rctx, end, err := m.begin(sctx, p, id)
	if err != nil {
		return err
	}
	remote := func() (session.Capabilities, error) {
		md, err := stream.Header()
		return session.ParseCapabilities(md), err
	}
	err = session.Run(rctx, stream, m.sessionOptions(p, p.spec.Context, local, remote, exchanged))
	cancel()
	end(err)
	return err
}

// recvErr turns a failed Send into the status the server ended the stream
// with: gRPC reports that on Recv, and Send only says io.EOF.
func recvErr(stream grpc.ClientStream, sendErr error) error {
	if err := stream.RecvMsg(new(discoverypb.BidirectionalStream)); err != nil {
		return err
	}
	return sendErr
}
