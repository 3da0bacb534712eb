package runner

import (
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
)

// ingressRoutes holds the routes of every served export, which the
// ingress listeners are made of (snapshot.IngressListeners), and which
// export takes each SNI, so that an export is checked against the others
// in O(its ports). The listeners are built again, once per Apply, when a
// route or the input changed.
type ingressRoutes struct {
	byExp map[string][]snapshot.IngressRoute
	owner map[string]string // SNI → export
	stale bool
	// served are the names of the listeners and clusters in the cache.
	served []typedName
}

func newIngressRoutes() ingressRoutes {
	return ingressRoutes{byExp: map[string][]snapshot.IngressRoute{}, owner: map[string]string{}}
}

// check refuses an SNI another export has.
func (x *ingressRoutes) check(export string, routes []snapshot.IngressRoute) error {
	for _, r := range routes {
		if other, ok := x.owner[r.SNI]; ok && other != export {
			return fmt.Errorf("ingress: exports %q and %q both have server name %q", other, export, r.SNI)
		}
	}
	return nil
}

// set makes routes the export's (none: it is gone).
func (x *ingressRoutes) set(export string, routes []snapshot.IngressRoute) {
	for _, r := range x.byExp[export] {
		delete(x.owner, r.SNI)
	}
	delete(x.byExp, export)
	if len(routes) > 0 {
		x.byExp[export] = routes
	}
	for _, r := range routes {
		x.owner[r.SNI] = export
	}
	x.stale = true
}

// refresh sets the ingress listeners again if they are stale, and removes
// those that no route needs any more.
func (x *ingressRoutes) refresh(res *Result, in *snapshot.Input) {
	if !x.stale {
		return
	}
	x.stale = false
	var all []snapshot.IngressRoute
	for _, name := range sortedKeys(x.byExp) {
		all = append(all, x.byExp[name]...)
	}
	ls, cs := snapshot.IngressListeners(in, all)
	var now []typedName
	for _, l := range ls {
		now = append(now, typedName{resource.ListenerType, l.GetName()})
		res.set(model.Ingress, resource.ListenerType, l.GetName(), l)
	}
	for _, c := range cs {
		now = append(now, typedName{resource.ClusterType, c.GetName()})
		res.set(model.Ingress, resource.ClusterType, c.GetName(), c)
	}
	for _, n := range x.served {
		if !containsName(now, n) {
			res.del(model.Ingress, n.typeURL, n.name)
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
