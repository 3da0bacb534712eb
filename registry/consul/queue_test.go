package consul

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func drain(q *queue) []string {
	var out []string
	for {
		n, ok := q.take()
		if !ok {
			return out
		}
		out = append(out, n)
	}
}

// Each name is read once however often it is queued, and a change of
// checks is read before a sweep's names.
func TestQueue(t *testing.T) {
	q := newQueue()
	q.add(false, "a", "b", "c", "a")
	q.add(false, "b")
	q.add(true, "c", "d")
	q.add(true, "d")
	require.Equal(t, []string{"c", "d", "a", "b"}, drain(q))

	// Taken, a name is queued again.
	q.add(false, "a")
	n, ok := q.next(context.Background())
	require.True(t, ok)
	require.Equal(t, "a", n)
	q.add(false, "a")
	require.Equal(t, []string{"a"}, drain(q))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, ok = q.next(ctx)
	require.False(t, ok)
}
