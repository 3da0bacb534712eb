package upstream

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// GRPC starts a gRPC server of grpc.testing.TestService (gRPC's own interop
// test service) on addr (127.0.0.1:0 when empty), in plaintext: the
// gateways carry it as HTTP/2. UnaryCall answers with the request's payload
// and the server's name as server_id; StreamingOutputCall sends one message
// per response parameter, each after its interval; FullDuplexCall does
// that for each request of the stream, for as long as the stream lives.
func GRPC(name, addr string) (*Server, error) {
	l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, &testService{name: name})
	done := make(chan error, 1)
	go func() { done <- gs.Serve(l) }()
	s := &Server{Name: name, listener: l}
	s.close = func() error {
		gs.Stop()
		return <-done
	}
	return s, nil
}

type testService struct {
	testpb.UnimplementedTestServiceServer
	name string
}

func (s *testService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: req.GetPayload(), ServerId: s.name}, nil
}

func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range req.GetResponseParameters() {
		if us := p.GetIntervalUs(); us > 0 {
			select {
			case <-time.After(time.Duration(us) * time.Microsecond):
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
		body := make([]byte, p.GetSize())
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		for _, p := range req.GetResponseParameters() {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				return err
			}
		}
	}
}
