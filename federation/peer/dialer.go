package peer

import (
	"context"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/session"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/internal/retry"
)

// dialKeepalive pings an idle connection every minute and never without a
// stream: a known Hamlet server closes connections that ping more often
// than every 40 s.
var dialKeepalive = keepalive.ClientParameters{Time: time.Minute, Timeout: 20 * time.Second}

func (m *Manager) dialLoop(ctx context.Context, p *peerRun) {
	b := retry.New(m.cfg.MinBackoff, time.Duration(m.maxBackoff.Load()))
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
		received := !p.activity.LastReceived().Equal(before)
		if !received {
			// Nothing came from the peer: the connection failed
			// before it was one.
			err = m.explain(p, err)
		}
		refused := classify(err, received, time.Now())
		if refused != nil && refused.Final {
			m.refused(p, Failed, refused, err)
			m.log.Error("peer refused this agent in a way no change on its side cures; not retrying until this agent's configuration changes",
				zap.String("peer", p.spec.Name), zap.String("kind", string(refused.Kind)), zap.Error(err))
			return
		}
		if exchanged {
			b.Reset()
		}
		b.SetCap(time.Duration(m.maxBackoff.Load()))
		wait := b.Next()
		m.mu.Lock()
		p.status.Reconnects++
		next := time.Now().Add(wait)
		p.status.NextRetry = &next
		m.mu.Unlock()
		if refused != nil {
			m.refused(p, Refused, refused, err)
			m.log.Warn("peer refused this agent; retrying, as a change of its configuration may cure it", zap.String("peer", p.spec.Name),
				zap.String("kind", string(refused.Kind)), zap.Duration("in", wait), zap.Error(err))
		} else {
			m.setState(p, Backoff, err)
			m.log.Warn("peer stream failed; retrying", zap.String("peer", p.spec.Name), zap.Duration("in", wait), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// refused records a refusal of the peer: its state, kind and message.
func (m *Manager) refused(p *peerRun, st State, r *DialRefusal, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.status.State != st {
		p.status.Since = time.Now()
	}
	p.status.State = st
	p.status.Refusal = r
	setErrorLocked(p, err)
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
