package runner

import (
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
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
func (h *egressHTTP) add(res *Result, in *snapshot.Input, ports []uint32) {
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
			res.del(model.Egress, resource.ListenerType, snapshot.EgressHTTPName(p))
		}
	}
}

// refresh sets every listener again when the input changed.
func (h *egressHTTP) refresh(res *Result, in *snapshot.Input) {
	if !h.stale {
		return
	}
	h.stale = false
	for _, p := range sortedKeys(h.count) {
		h.set(res, in, p)
	}
}

func (h *egressHTTP) set(res *Result, in *snapshot.Input, port uint32) {
	l := snapshot.EgressHTTPListener(in, port)
	res.set(model.Egress, resource.ListenerType, l.GetName(), l)
}

func routePorts(hrs []snapshot.HostRoute) []uint32 {
	ports := make([]uint32, len(hrs))
	for i, hr := range hrs {
		ports[i] = hr.Port
	}
	return ports
}
