package bench

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// The sync runs measure what they are named for: window 1 is plain Hamlet,
// with no extension negotiated, and a larger window negotiates it with the
// services per response given, one service a response as agents before
// services-per-response.
func TestSyncRunsNegotiateWhatTheyReport(t *testing.T) {
	o := SyncOptions{Services: []int{20}, Windows: []int{1, 64}, ServicesPerResponse: []int{1, 256}, NoNetem: true, NoProxy: true}
	require.NoError(t, o.defaults())
	rep := runSync(context.Background(), &o, testWriter{t})
	type row struct {
		window, perResponse int
		negotiated          string
	}
	var got []row
	for _, r := range rep.Runs {
		require.Empty(t, r.Error)
		require.Equal(t, 20, r.Services)
		got = append(got, row{r.Window, r.ServicesPerResponse, r.Negotiated})
	}
	require.Equal(t, []row{
		{1, 1, ""},
		{64, 1, "sync-complete,window=64"},
		{64, 256, "sync-complete,window=64,services-per-response=256"},
	}, got)
}
