package snapshot

import (
	"fmt"
	"maps"
	"slices"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/model"
)

// sniTable holds the routes of every served service that a gateway-wide
// listener picks by server name (the ingress listeners:
// ingressListeners; the egress Connect listener), and which service takes
// each SNI, so that a service is checked against the others in O(its
// routes). The listeners are built again, once per Apply, when a route or
// the input changed.
type sniTable[R any] struct {
	role  model.Role
	sni   func(R) string
	equal func(a, b R) bool
	build func(*view, []R) ([]*listener.Listener, []*cluster.Cluster)

	byKey map[string][]R
	owner map[string]string // SNI → key
	stale bool
	// served are the names of the listeners and clusters in the cache.
	served []typedName
}

func newSNITable[R any](role model.Role, sni func(R) string, equal func(a, b R) bool, build func(*view, []R) ([]*listener.Listener, []*cluster.Cluster)) sniTable[R] {
	return sniTable[R]{role: role, sni: sni, equal: equal, build: build, byKey: map[string][]R{}, owner: map[string]string{}}
}

func newIngressRoutes() sniTable[IngressRoute] {
	return newSNITable(model.Ingress, func(r IngressRoute) string { return r.SNI },
		func(a, b IngressRoute) bool {
			return a.SNI == b.SNI && proto.Equal(a.Chain, b.Chain) && slices.EqualFunc(a.Consumers, b.Consumers, samePeer)
		}, ingressListeners)
}

func samePeer(a, b model.Peer) bool {
	return a.Name == b.Name && a.TrustDomain == b.TrustDomain && slices.Equal(a.SPIFFEIDs, b.SPIFFEIDs) && a.IstioALPN == b.IstioALPN
}

func newConnectRoutes() sniTable[SNIRoute] {
	return newSNITable(model.Egress, func(r SNIRoute) string { return r.SNI },
		func(a, b SNIRoute) bool { return a.SNI == b.SNI && proto.Equal(a.Chain, b.Chain) },
		func(in *view, rs []SNIRoute) ([]*listener.Listener, []*cluster.Cluster) {
			if l := egressConnectListener(in, rs); l != nil {
				return []*listener.Listener{l}, nil
			}
			return nil, nil
		})
}

// check refuses an SNI another service has; what names a service is its
// key.
func (x *sniTable[R]) check(what, key string, routes []R) error {
	for _, r := range routes {
		if other, ok := x.owner[x.sni(r)]; ok && other != key {
			return fmt.Errorf("%s: %s %q and %q both have server name %q", x.role, what, other, key, x.sni(r))
		}
	}
	return nil
}

// set makes routes the service's (none: it is gone). The listeners are
// built again only when a route changed: most changes of a service (its
// endpoints) leave them as they are.
func (x *sniTable[R]) set(key string, routes []R) {
	old := x.byKey[key]
	if slices.EqualFunc(old, routes, x.equal) {
		return
	}
	for _, r := range old {
		delete(x.owner, x.sni(r))
	}
	delete(x.byKey, key)
	if len(routes) > 0 {
		x.byKey[key] = routes
	}
	for _, r := range routes {
		x.owner[x.sni(r)] = key
	}
	x.stale = true
}

// refresh sets the listeners again if they are stale, and removes those
// that no route needs any more.
func (x *sniTable[R]) refresh(res *Result, in *view) {
	if !x.stale {
		return
	}
	x.stale = false
	var all []R
	for _, key := range slices.Sorted(maps.Keys(x.byKey)) {
		all = append(all, x.byKey[key]...)
	}
	ls, cs := x.build(in, all)
	var now []typedName
	for _, l := range ls {
		now = append(now, typedName{resource.ListenerType, l.GetName()})
		res.set(x.role, resource.ListenerType, l.GetName(), l)
	}
	for _, c := range cs {
		now = append(now, typedName{resource.ClusterType, c.GetName()})
		res.set(x.role, resource.ClusterType, c.GetName(), c)
	}
	for _, n := range x.served {
		if !containsName(now, n) {
			res.del(x.role, n.typeURL, n.name)
		}
	}
	x.served = now
}

func containsName(ns []typedName, n typedName) bool {
	for _, m := range ns {
		if m == n {
			return true
		}
	}
	return false
}
