package servetest

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestServeRunsUntilTheTestEnds(t *testing.T) {
	returned := make(chan struct{})
	t.Run("server", func(t *testing.T) {
		addr := Serve(t, func(ctx context.Context, lis net.Listener) error {
			defer close(returned)
			<-ctx.Done()
			return lis.Close()
		})
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		require.NoError(t, conn.Close())
		select {
		case <-returned:
			t.Fatal("the server stopped before the test ended")
		default:
		}
	})
	<-returned // closed already: the cleanup waited for it
}

func TestAnErrorOnStopFailsTheTest(t *testing.T) {
	r := &recorder{TB: t}
	inGoroutine(func() {
		stop := Start(r, nil, func(ctx context.Context) error {
			<-ctx.Done()
			return errors.New("not closed cleanly")
		})
		stop()
	})
	require.True(t, r.failed.Load())
}

func TestReturningBeforeReadyFailsTheTest(t *testing.T) {
	r := &recorder{TB: t}
	returned := false
	inGoroutine(func() {
		Start(r, make(chan struct{}), func(context.Context) error { return errors.New("address in use") })
		returned = true
	})
	require.True(t, r.failed.Load())
	require.False(t, returned)
	require.Len(t, r.cleanups, 1)
	r.cleanups[0]() // and does not wait for the run that is over
}

// recorder is the test it wraps, but records a failure instead of
// reporting it, and keeps the cleanups for the test to run.
type recorder struct {
	testing.TB
	failed   atomic.Bool
	cleanups []func()
}

func (r *recorder) Helper()               {}
func (r *recorder) Cleanup(f func())      { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(string, ...any) { r.failed.Store(true) }
func (r *recorder) Fatalf(string, ...any) { r.failed.Store(true); runtime.Goexit() }
func (r *recorder) FailNow()              { r.failed.Store(true); runtime.Goexit() }

// inGoroutine runs f as a test runs its body: a FailNow ends it.
func inGoroutine(f func()) {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	<-done
}
