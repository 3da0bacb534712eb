package snapshot

import (
	"maps"
	"slices"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/model"
)

// egressHTTP counts the host-routed instances on each service port: the
// port has its egress HTTP listener while one is left. The listener does
// not change with the instances (each is a routing scope of its own), so
// a service's change never touches it.
type egressHTTP struct {
	count map[uint32]int
	// stale is set when the input changed: every listener is set again.
	stale bool
}

func newEgressHTTP() egressHTTP { return egressHTTP{count: map[uint32]int{}} }

// add counts ports, creating the listeners of those that had none.
func (h *egressHTTP) add(res *Result, in *view, ports []uint32) {
	for _, p := range ports {
		if h.count[p]++; h.count[p] == 1 {
			h.set(res, in, p)
		}
	}
}

// remove uncounts ports, removing the listeners of those left with none.
func (h *egressHTTP) remove(res *Result, ports []uint32) {
	for _, p := range ports {
		if h.count[p]--; h.count[p] <= 0 {
			delete(h.count, p)
			res.del(model.Egress, resource.ListenerType, EgressHTTPName(p))
		}
	}
}

// refresh sets every listener again when the input changed.
func (h *egressHTTP) refresh(res *Result, in *view) {
	if !h.stale {
		return
	}
	h.stale = false
	for _, p := range slices.Sorted(maps.Keys(h.count)) {
		h.set(res, in, p)
	}
}

func (h *egressHTTP) set(res *Result, in *view, port uint32) {
	l := h.build(in, port)
	res.set(model.Egress, resource.ListenerType, l.GetName(), l)
}

// build is the listener of port: the same whatever the instances.
func (h *egressHTTP) build(in *view, port uint32) *listener.Listener {
	return egressHTTPListener(in, port)
}
