package runner

import (
	"fmt"
	"strconv"

	"github.com/meshfed/meshfed/federation/store"
)

// portBucket is the store bucket of egress listener ports, by
// snapshot.EgressKey.
const portBucket = "egress-ports"

// PortRange is the inclusive range dedicated egress listeners are given
// ports from.
type PortRange struct {
	From, To uint32
}

// ports allocates egress listener ports and keeps them in the store, so
// that a service keeps its port across restarts: workloads and registries
// (DNS SRV, Consul) know it by that port.
type ports struct {
	rng    PortRange
	store  *store.Store
	byKey  map[string]uint32
	inUse  map[uint32]string
	cursor uint32
}

func loadPorts(s *store.Store, rng PortRange) (*ports, error) {
	p := &ports{rng: rng, store: s, byKey: map[string]uint32{}, inUse: map[uint32]string{}, cursor: rng.From}
	var stale []string
	err := s.ForEach(portBucket, func(key string, v []byte) error {
		n, err := strconv.ParseUint(string(v), 10, 32)
		port := uint32(n)
		// A port outside a changed range, or claimed twice, is given anew.
		if err != nil || port < rng.From || port > rng.To || p.inUse[port] != "" {
			stale = append(stale, key)
			return nil
		}
		p.byKey[key], p.inUse[port] = port, key
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.Apply(portBucket, nil, stale); err != nil {
		return nil, err
	}
	return p, nil
}

// errRangeFull is returned for keys that found no free port.
type errRangeFull struct {
	rng  PortRange
	keys []string
}

func (e *errRangeFull) Error() string {
	return fmt.Sprintf("gateways.egress.ports: range %d-%d is full; %d dedicated listeners (first %q) have no port",
		e.rng.From, e.rng.To, len(e.keys), e.keys[0])
}

// update gives a port to every key of want without one and frees those of
// release, in one store transaction. Keys that found no port are reported
// in the error; the rest is done.
func (p *ports) update(want, release []string) error {
	puts := map[string][]byte{}
	var dels []string
	for _, k := range release {
		if port, ok := p.byKey[k]; ok {
			delete(p.byKey, k)
			delete(p.inUse, port)
			dels = append(dels, k)
		}
	}
	var full []string
	for _, k := range want {
		if _, ok := p.byKey[k]; ok {
			continue
		}
		port, ok := p.free()
		if !ok {
			full = append(full, k)
			continue
		}
		p.byKey[k], p.inUse[port] = port, k
		puts[k] = []byte(strconv.FormatUint(uint64(port), 10))
	}
	if err := p.store.Apply(portBucket, puts, dels); err != nil {
		// Undo: memory must not promise ports the store does not hold.
		for k := range puts {
			delete(p.inUse, p.byKey[k])
			delete(p.byKey, k)
		}
		return err
	}
	if len(full) > 0 {
		return &errRangeFull{rng: p.rng, keys: full}
	}
	return nil
}

// free finds an unused port, going round the range from where the last
// search ended, so a port just freed is the last to be given again.
func (p *ports) free() (uint32, bool) {
	size := uint64(p.rng.To) - uint64(p.rng.From) + 1
	if uint64(len(p.inUse)) >= size {
		return 0, false
	}
	for range size {
		port := p.cursor
		if p.cursor == p.rng.To {
			p.cursor = p.rng.From
		} else {
			p.cursor++
		}
		if p.inUse[port] == "" {
			return port, true
		}
	}
	return 0, false
}

func (p *ports) snapshot() map[string]uint32 {
	out := make(map[string]uint32, len(p.byKey))
	for k, v := range p.byKey {
		out[k] = v
	}
	return out
}
