package runner

import (
	"bytes"
	"fmt"
	"slices"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
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
		for _, hr := range imports[k].routes {
			if dirty[hr.port] {
				routes = append(routes, hr.expand())
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

// hostRoute is a virtual host kept marshaled: an entry is kept for every
// import, and the bytes take a fraction of the heap the proto takes.
type hostRoute struct {
	port  uint32
	vhost []byte
}

func compactRoutes(hrs []snapshot.HostRoute) []hostRoute {
	out := make([]hostRoute, len(hrs))
	for i, hr := range hrs {
		b, err := deterministic.Marshal(hr.VirtualHost)
		if err != nil {
			// A virtual host that passed the checks marshals.
			panic(fmt.Sprintf("virtual host %q: %v", hr.VirtualHost.GetName(), err))
		}
		out[i] = hostRoute{port: hr.Port, vhost: b}
	}
	return out
}

func (h hostRoute) expand() snapshot.HostRoute {
	vh := &route.VirtualHost{}
	if err := proto.Unmarshal(h.vhost, vh); err != nil {
		panic(fmt.Sprintf("virtual host kept by the translator: %v", err))
	}
	return snapshot.HostRoute{Port: h.port, VirtualHost: vh}
}

var deterministic = proto.MarshalOptions{Deterministic: true}

func markPorts(ports map[uint32]bool, routes []hostRoute) {
	for _, hr := range routes {
		ports[hr.port] = true
	}
}

func equalRoutes(a, b []hostRoute) bool {
	return slices.EqualFunc(a, b, func(x, y hostRoute) bool {
		return x.port == y.port && bytes.Equal(x.vhost, y.vhost)
	})
}
