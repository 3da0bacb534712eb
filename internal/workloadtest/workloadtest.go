// Package workloadtest serves a SPIFFE Workload API on a Unix socket for
// tests: it streams the X.509 SVID responses a test hands it.
package workloadtest

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
)

// API is a Workload API whose X.509 stream sends what Send is given.
type API struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	updates chan *workload.X509SVIDResponse
}

// Start serves an API until the test ends, and returns it with its
// address (unix:///path), as identity.workloadAPI and go-spiffe take it.
func Start(t testing.TB) (*API, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "workload.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	a := &API{updates: make(chan *workload.X509SVIDResponse, 4)}
	s := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(s, a)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return a, "unix://" + sock
}

// Send queues r for the client streaming now, or the next one to open
// its stream.
func (a *API) Send(r *workload.X509SVIDResponse) { a.updates <- r }

func (a *API) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	for {
		select {
		case r := <-a.updates:
			if err := stream.Send(r); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}
