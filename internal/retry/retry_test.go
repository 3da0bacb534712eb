package retry

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Each wait lies in its doubling band, [floor·2ⁿ, 3·floor·2ⁿ], cut to
// [floor, cap]; the bands reach the cap and stay there, and a Reset
// starts over. The draws are random: many schedules are checked, and
// the spread within a band is seen, not assumed.
func TestScheduleDoublesWithinItsBandsAndNeverPassesTheCap(t *testing.T) {
	const floor, cap = time.Second, 2 * time.Minute
	var firsts, capped []time.Duration
	for range 200 {
		b := New(floor, cap)
		for n := range 12 {
			lo := min(floor<<n, cap/3)
			hi := min(3*floor<<n, cap)
			d := b.Next()
			require.GreaterOrEqual(t, d, lo, "wait %d", n)
			require.LessOrEqual(t, d, hi, "wait %d", n)
			switch n {
			case 0:
				firsts = append(firsts, d)
			case 11:
				capped = append(capped, d)
			}
		}
		b.Reset()
		d := b.Next()
		require.GreaterOrEqual(t, d, floor, "after a reset")
		require.LessOrEqual(t, d, 3*floor, "after a reset")
	}
	require.Greater(t, spread(firsts), floor, "the first waits are spread, not one instant")
	require.Greater(t, spread(capped), cap/3, "the capped waits are spread below the cap")
}

// A cap below three floors squeezes the band; no wait leaves [floor, cap].
func TestShortCapHoldsEveryWait(t *testing.T) {
	b := New(time.Second, 2*time.Second)
	for range 1000 {
		d := b.Next()
		require.GreaterOrEqual(t, d, time.Second)
		require.LessOrEqual(t, d, 2*time.Second)
	}
	require.Equal(t, 2*time.Second, b.Cap())
	require.Equal(t, time.Second, New(time.Second, time.Millisecond).Cap(), "a cap below the floor is the floor")
}

// A new cap applies from the next wait, which starts from the floor.
func TestSetCapStartsOver(t *testing.T) {
	b := New(time.Second, time.Hour)
	for range 20 {
		b.Next()
	}
	b.SetCap(3 * time.Second)
	for range 100 {
		require.LessOrEqual(t, b.Next(), 3*time.Second)
	}
	b.SetCap(time.Hour)
	d := b.Next()
	require.LessOrEqual(t, d, 3*time.Second, "the first wait after a new cap is the floor's")
}

func spread(ds []time.Duration) time.Duration {
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	return hi - lo
}
