package runner

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
)

// egressHTTP keeps the egress HTTP listener and route configuration of each
// service port: they are the egress resources whose size follows the
// catalog, rebuilt only when a virtual host on their port changed (an
// endpoint change does not touch them).
type egressHTTP struct {
	// ports are the ports that have a listener.
	ports map[uint32]bool
}

// rebuild sets the listener and route configuration of each port in dirty
// from every import's virtual hosts on it, and removes both when none is
// left.
func (h *egressHTTP) rebuild(res *Result, in *snapshot.Input, imports map[catalog.Key]*entry, dirty map[uint32]bool) {
	if len(dirty) == 0 {
		return
	}
	var routes []snapshot.HostRoute
	for _, k := range sortedImports(imports) {
		for _, hr := range imports[k].res.HostRoutes {
			if dirty[hr.Port] {
				routes = append(routes, hr)
			}
		}
	}
	listeners, rcs := snapshot.EgressHTTP(in, routes)
	served := map[uint32]bool{}
	for i, l := range listeners {
		port := l.GetAddress().GetSocketAddress().GetPortValue()
		served[port] = true
		if !h.ports[port] {
			res.set(model.Egress, resource.ListenerType, l.GetName(), l)
			h.ports[port] = true
		}
		res.set(model.Egress, resource.RouteType, rcs[i].GetName(), rcs[i])
	}
	for _, port := range sortedKeys(dirty) {
		if !served[port] && h.ports[port] {
			delete(h.ports, port)
			res.del(model.Egress, resource.ListenerType, snapshot.EgressHTTPName(port))
			res.del(model.Egress, resource.RouteType, snapshot.EgressHTTPName(port))
		}
	}
}

func markPorts(ports map[uint32]bool, routes []snapshot.HostRoute) {
	for _, hr := range routes {
		ports[hr.Port] = true
	}
}

func equalRoutes(a, b []snapshot.HostRoute) bool {
	return slices.EqualFunc(a, b, func(x, y snapshot.HostRoute) bool {
		return x.Port == y.Port && proto.Equal(x.VirtualHost, y.VirtualHost)
	})
}
