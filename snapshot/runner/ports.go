package runner

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
)

// PortRange is the inclusive range dedicated egress listeners are given
// ports from.
type PortRange struct {
	From, To uint32
}

// KV is where the allocator keeps its ports, one key each: a bucket of
// the agent's store.
type KV interface {
	ForEach(fn func(key string, value []byte) error) error
	// Apply puts and deletes in one durable write.
	Apply(puts map[string][]byte, dels []string) error
}

// Allocator gives dedicated egress listener ports to imported instances
// and keeps them, so that a service keeps its port across restarts:
// workloads and registries (DNS SRV, Consul) know it by that port. A port
// is proposed for a translation and kept only if the translation passed
// the checks (Settle): a service that never reached the gateway never holds
// one, and what no import holds is freed.
type Allocator struct {
	rng PortRange
	kv  KV

	mu       sync.RWMutex
	byKey    map[string]uint32 // kept, in the KV
	proposed map[string]uint32 // reserved until the next Settle
	inUse    map[uint32]string // kept or proposed
	unsaved  map[string]struct{}
	cursor   uint32
}

// NewAllocator loads the ports in kv. A port outside rng (a changed range),
// or held twice, is given anew.
func NewAllocator(kv KV, rng PortRange) (*Allocator, error) {
	if rng.From == 0 || rng.To < rng.From {
		return nil, fmt.Errorf("gateways.egress.ports: %d-%d is not a port range", rng.From, rng.To)
	}
	a := &Allocator{rng: rng, kv: kv, byKey: map[string]uint32{}, proposed: map[string]uint32{}, inUse: map[uint32]string{}, unsaved: map[string]struct{}{}, cursor: rng.From}
	var stale []string
	err := kv.ForEach(func(key string, v []byte) error {
		n, err := strconv.ParseUint(string(v), 10, 32)
		port := uint32(n)
		if err != nil || port < rng.From || port > rng.To || a.inUse[port] != "" {
			stale = append(stale, key)
			return nil
		}
		a.byKey[key], a.inUse[port] = port, key
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(stale) > 0 {
		if err := kv.Apply(nil, stale); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// ErrRangeFull reports keys that found no free port.
type ErrRangeFull struct {
	Range PortRange
	Keys  []string
}

func (e *ErrRangeFull) Error() string {
	return fmt.Sprintf("gateways.egress.ports: range %d-%d is full; %d dedicated listeners (first %q) have no port",
		e.Range.From, e.Range.To, len(e.Keys), e.Keys[0])
}

// Propose returns a port for each key: the one it keeps, or a free one
// reserved until the next Settle. Keys are served in sorted order; those
// that found none are left out and reported.
func (a *Allocator) Propose(keys []string) (map[string]uint32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]uint32, len(keys))
	var full []string
	for _, k := range sortedUnique(slices.Clone(keys)) {
		if p, ok := a.byKey[k]; ok {
			out[k] = p
			continue
		}
		if p, ok := a.proposed[k]; ok {
			out[k] = p
			continue
		}
		p, ok := a.free()
		if !ok {
			full = append(full, k)
			continue
		}
		a.proposed[k], a.inUse[p] = p, k
		out[k] = p
	}
	if len(full) > 0 {
		return out, &ErrRangeFull{Range: a.rng, Keys: full}
	}
	return out, nil
}

// Settle keeps the ports of held (those only proposed become kept) and
// frees those of freed and every other proposal. Memory is what the
// gateways serve, so it changes even when the write fails: a port must
// never be given twice. The store catches up on the next Settle, and until
// then a restart may give a port anew.
func (a *Allocator) Settle(held, freed []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range held {
		if p, ok := a.proposed[k]; ok {
			a.byKey[k] = p
			a.unsaved[k] = struct{}{}
		}
	}
	keep := set(held)
	for _, k := range freed {
		if p, ok := a.byKey[k]; ok && !keep[k] {
			delete(a.byKey, k)
			delete(a.inUse, p)
			a.unsaved[k] = struct{}{}
		}
	}
	for k, p := range a.proposed {
		if _, kept := a.byKey[k]; !kept && a.inUse[p] == k {
			delete(a.inUse, p)
		}
	}
	clear(a.proposed)
	return a.save()
}

// save writes what changed since the last write that succeeded.
func (a *Allocator) save() error {
	if len(a.unsaved) == 0 {
		return nil
	}
	puts := map[string][]byte{}
	var dels []string
	for _, k := range sortedKeys(a.unsaved) {
		if p, ok := a.byKey[k]; ok {
			puts[k] = []byte(strconv.FormatUint(uint64(p), 10))
		} else {
			dels = append(dels, k)
		}
	}
	if err := a.kv.Apply(puts, dels); err != nil {
		return fmt.Errorf("storing %d egress ports: %w", len(a.unsaved), err)
	}
	clear(a.unsaved)
	return nil
}

// Prune frees every port whose key is not in live: imports deleted while
// the agent was down, or rejected under an older version.
func (a *Allocator) Prune(live []string) error {
	alive := set(live)
	a.mu.RLock()
	var orphans []string
	for _, k := range sortedKeys(a.byKey) {
		if !alive[k] {
			orphans = append(orphans, k)
		}
	}
	a.mu.RUnlock()
	if len(orphans) == 0 {
		return nil
	}
	return a.Settle(nil, orphans)
}

// free finds an unused port, going round the range from where the last
// search ended, so a port just freed is the last to be given again.
func (a *Allocator) free() (uint32, bool) {
	size := uint64(a.rng.To) - uint64(a.rng.From) + 1
	if uint64(len(a.inUse)) >= size {
		return 0, false
	}
	for range size {
		port := a.cursor
		if a.cursor == a.rng.To {
			a.cursor = a.rng.From
		} else {
			a.cursor++
		}
		if a.inUse[port] == "" {
			return port, true
		}
	}
	return 0, false
}

// Port is the port a key keeps, if any.
func (a *Allocator) Port(key string) (uint32, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	p, ok := a.byKey[key]
	return p, ok
}

// Ports are the ports kept, by key.
func (a *Allocator) Ports() map[string]uint32 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return maps.Clone(a.byKey)
}

func set(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}
