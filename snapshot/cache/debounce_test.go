package cache

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recordingApply struct {
	mu      sync.Mutex
	batches map[Role][][]Change
}

func (r *recordingApply) apply(role Role, changes []Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batches == nil {
		r.batches = map[Role][][]Change{}
	}
	r.batches[role] = append(r.batches[role], changes)
	return nil
}

func (r *recordingApply) count(role Role) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches[role])
}

func TestDebouncerCoalescesABurst(t *testing.T) {
	var rec recordingApply
	d := NewDebouncer(rec.apply, time.Hour, time.Hour, nil)
	defer d.Stop()
	for i := range 1000 {
		d.Submit(RoleEgress, clusterChange(fmt.Sprintf("c%d", i%100), int64(i)))
	}
	d.Submit(RoleIngress, listenerChange("l"))
	require.NoError(t, d.Flush())

	require.Len(t, rec.batches[RoleEgress], 1)
	batch := rec.batches[RoleEgress][0]
	require.Len(t, batch, 100, "later changes to a resource replace earlier ones")
	assert.Equal(t, "c0", batch[0].Name, "first-submitted order is kept")
	assert.Equal(t, clusterChange("c0", 900), batch[0])
	assert.Len(t, rec.batches[RoleIngress], 1)

	require.NoError(t, d.Flush())
	assert.Len(t, rec.batches[RoleEgress], 1, "nothing pending, nothing applied")
}

func TestDebouncerAppliesAfterHoldoff(t *testing.T) {
	var rec recordingApply
	d := NewDebouncer(rec.apply, time.Millisecond, 10*time.Millisecond, nil)
	defer d.Stop()
	d.Submit(RoleEgress, clusterChange("a", 1))
	require.Eventually(t, func() bool { return rec.count(RoleEgress) == 1 }, 10*time.Second, time.Millisecond)
}

// A steady stream of changes, each within the hold-off of the last, is still
// applied by the maximum delay.
func TestDebouncerMaxDelay(t *testing.T) {
	var rec recordingApply
	d := NewDebouncer(rec.apply, time.Hour, 5*time.Millisecond, nil)
	defer d.Stop()
	i := 0
	require.Eventually(t, func() bool {
		i++
		d.Submit(RoleEgress, clusterChange("a", int64(i)))
		return rec.count(RoleEgress) > 0
	}, 10*time.Second, time.Millisecond)
}

func TestDebouncerFeedsCache(t *testing.T) {
	c := newTestCache(t)
	d := NewDebouncer(c.Apply, time.Hour, time.Hour, nil)
	defer d.Stop()
	d.Submit(RoleEgress, clusterChange("a", 1), clusterChange("b", 1))
	d.Submit(RoleEgress, deleted(resource.ClusterType, "b"))
	require.NoError(t, d.Flush())
	assert.Equal(t, 1, c.Len(RoleEgress, resource.ClusterType))
}
