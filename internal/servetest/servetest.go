// Package servetest runs what a test serves (a server's Serve loop, an
// agent's Run) in the background until the test ends. It then fails the
// test unless the loop returned nil: one that does not stop cleanly when
// its context ends is a bug the tests should show.
package servetest

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Start runs run in a goroutine. When ready is not nil, Start returns once
// it is closed, and fails the test if run returns first. stop cancels run's
// context, waits for it to return and fails the test unless it returned nil;
// it runs when the test ends, and only the first call does anything.
func Start(t testing.TB, ready <-chan struct{}, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	if ready != nil {
		select {
		case <-ready:
		case err := <-done:
			once.Do(cancel) // run is over: stop has nothing to wait for
			t.Fatalf("stopped before it was ready: %v", err)
		}
	}
	return stop
}

// Serve listens on a free loopback port and starts serve on it, as Start
// does. It returns the address.
func Serve(t testing.TB, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	Start(t, nil, func(ctx context.Context) error { return serve(ctx, lis) })
	return lis.Addr().String()
}
