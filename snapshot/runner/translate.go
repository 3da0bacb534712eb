package runner

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/cache"
)

// batch collects the cache changes of one step, per role.
type batch struct {
	changes map[cache.Role][]cache.Change
}

func (b *batch) set(role cache.Role, typeURL, name string, m proto.Message) {
	b.changes[role] = append(b.changes[role], cache.Change{TypeURL: typeURL, Name: name, Resource: m})
}

func (b *batch) del(role cache.Role, typeURL, name string) {
	b.changes[role] = append(b.changes[role], cache.Change{TypeURL: typeURL, Name: name})
}

func (b *batch) count(role cache.Role) int { return len(b.changes[role]) }

// translate turns changed catalog keys into cache changes. A service whose
// resources fail the checks keeps its last good resources.
func (r *Runner) translate(keys []catalog.Key, gatewaySecrets bool) *batch {
	b := &batch{changes: map[cache.Role][]cache.Change{}}
	imports := map[catalog.Key]model.Import{}
	var want []string
	for _, k := range keys {
		if k.Kind != catalog.KindImport {
			continue
		}
		if imp, ok := r.cfg.Catalog.Import(k.Peer, k.ID); ok {
			imports[k] = imp
			want = append(want, snapshot.EgressPortKeys([]model.Import{imp})...)
		}
	}
	r.updatePorts(want, nil)

	var release []string
	routeDirty := map[uint32]bool{}
	ingressDirty := false
	for _, k := range keys {
		switch k.Kind {
		case catalog.KindImport:
			old := r.imports[k]
			imp, ok := imports[k]
			if !ok {
				if old != nil {
					release = append(release, old.portKeys...)
					markPorts(routeDirty, old.res.HostRoutes)
					r.remove(b, cache.RoleEgress, old)
					delete(r.imports, k)
				}
				continue
			}
			sr := snapshot.EgressResources(&r.in, imp)
			if err := snapshot.CheckService(&r.in, snapshot.Egress, sr); err != nil {
				r.invalid("import", zap.String("peer", k.Peer), zap.String("resource_id", k.ID), zap.Error(err))
				continue
			}
			e := r.put(b, cache.RoleEgress, old, sr)
			e.portKeys = snapshot.EgressPortKeys([]model.Import{imp})
			if old != nil {
				release = append(release, minus(old.portKeys, e.portKeys)...)
			}
			r.imports[k] = e
			if old == nil || !equalRoutes(old.res.HostRoutes, sr.HostRoutes) {
				markPorts(routeDirty, sr.HostRoutes)
				if old != nil {
					markPorts(routeDirty, old.res.HostRoutes)
				}
			}
		case catalog.KindExport:
			old := r.exports[k.ID]
			exp, ok := r.cfg.Catalog.Export(k.ID)
			if !ok {
				if old != nil {
					r.remove(b, cache.RoleIngress, old)
					delete(r.exports, k.ID)
					ingressDirty = true
				}
				continue
			}
			sr := snapshot.IngressResources(&r.in, exp)
			if err := snapshot.CheckService(&r.in, snapshot.Ingress, sr); err != nil {
				r.invalid("export", zap.String("export", k.ID), zap.Error(err))
				continue
			}
			r.exports[k.ID] = r.put(b, cache.RoleIngress, old, sr)
			ingressDirty = old == nil || !equalAll(old.res.FilterChains, sr.FilterChains) || ingressDirty
		}
	}
	if !r.ready {
		for _, e := range r.imports {
			markPorts(routeDirty, e.res.HostRoutes)
		}
	}
	r.egressHTTP(b, routeDirty)
	if ingressDirty || !r.ready {
		r.ingressListener(b)
	}
	if gatewaySecrets || !r.ready {
		r.gatewaySecrets(b)
	}
	r.updatePorts(nil, release)
	return b
}

func (r *Runner) updatePorts(want, release []string) {
	if len(want) == 0 && len(release) == 0 {
		return
	}
	r.mu.Lock()
	err := r.ports.update(want, release)
	r.mu.Unlock()
	if err != nil {
		r.m.portErrors.Inc()
		r.log.Error("egress ports not allocated", zap.Error(err))
	}
}

func (r *Runner) invalid(kind string, fields ...zap.Field) {
	r.m.invalid.WithLabelValues(kind).Inc()
	r.log.Warn("service translation failed the Envoy checks; its last good configuration stays", append(fields, zap.String("kind", kind))...)
}

// put replaces old (nil for a new service) by the resources of sr.
func (r *Runner) put(b *batch, role cache.Role, old *entry, sr snapshot.ServiceResources) *entry {
	e := &entry{res: sr}
	for _, c := range sr.Clusters {
		e.names = append(e.names, typedName{resource.ClusterType, c.GetName()})
		b.set(role, resource.ClusterType, c.GetName(), c)
	}
	for _, cla := range sr.Endpoints {
		e.names = append(e.names, typedName{resource.EndpointType, cla.GetClusterName()})
		b.set(role, resource.EndpointType, cla.GetClusterName(), cla)
	}
	for _, l := range sr.Listeners {
		e.names = append(e.names, typedName{resource.ListenerType, l.GetName()})
		b.set(role, resource.ListenerType, l.GetName(), l)
	}
	for _, s := range sr.Secrets {
		e.names = append(e.names, typedName{resource.SecretType, s.GetName()})
		r.secrets[s.GetName()]++
		b.set(role, resource.SecretType, s.GetName(), s)
	}
	if old != nil {
		r.drop(b, role, old, e.names)
	}
	return e
}

// remove deletes every resource of old.
func (r *Runner) remove(b *batch, role cache.Role, old *entry) { r.drop(b, role, old, nil) }

// drop deletes the resources of old not in keep. Secrets are shared by the
// services that name them and go with the last one.
func (r *Runner) drop(b *batch, role cache.Role, old *entry, keep []typedName) {
	kept := make(map[typedName]bool, len(keep))
	for _, n := range keep {
		kept[n] = true
	}
	for _, n := range old.names {
		if n.typeURL == resource.SecretType {
			r.secrets[n.name]--
			if r.secrets[n.name] > 0 {
				continue
			}
			delete(r.secrets, n.name)
			if slices.Contains(r.gateway[role], n.name) {
				continue
			}
		}
		if !kept[n] {
			b.del(role, n.typeURL, n.name)
		}
	}
}

// egressHTTP rebuilds the egress HTTP listener and route configuration of
// each port in ports from every import's virtual hosts on it, and removes
// both when none is left. They are the egress resources whose size follows
// the catalog, rebuilt only when a virtual host on their port changed: an
// endpoint change does not touch them.
func (r *Runner) egressHTTP(b *batch, ports map[uint32]bool) {
	if len(ports) == 0 {
		return
	}
	var routes []snapshot.HostRoute
	for _, e := range r.imports {
		for _, hr := range e.res.HostRoutes {
			if ports[hr.Port] {
				routes = append(routes, hr)
			}
		}
	}
	listeners, rcs := snapshot.EgressHTTP(&r.in, routes)
	served := map[uint32]bool{}
	for i, l := range listeners {
		port := l.GetAddress().GetSocketAddress().GetPortValue()
		served[port] = true
		if !r.httpPorts[port] {
			b.set(cache.RoleEgress, resource.ListenerType, l.GetName(), l)
			r.httpPorts[port] = true
		}
		b.set(cache.RoleEgress, resource.RouteType, rcs[i].GetName(), rcs[i])
	}
	for _, port := range sortedPorts(ports) {
		if !served[port] && r.httpPorts[port] {
			delete(r.httpPorts, port)
			b.del(cache.RoleEgress, resource.ListenerType, snapshot.EgressHTTPName(port))
			b.del(cache.RoleEgress, resource.RouteType, snapshot.EgressHTTPName(port))
		}
	}
}

func markPorts(ports map[uint32]bool, routes []snapshot.HostRoute) {
	for _, hr := range routes {
		ports[hr.Port] = true
	}
}

func sortedPorts(ports map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(ports))
	for p := range ports {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func equalRoutes(a, b []snapshot.HostRoute) bool {
	return slices.EqualFunc(a, b, func(x, y snapshot.HostRoute) bool {
		return x.Port == y.Port && proto.Equal(x.VirtualHost, y.VirtualHost)
	})
}

// ingressListener rebuilds the ingress listener from every export's filter
// chains, checked together for overlapping matches.
func (r *Runner) ingressListener(b *batch) {
	var all snapshot.ServiceResources
	for _, e := range r.exports {
		all.Clusters = append(all.Clusters, e.res.Clusters...)
		all.Endpoints = append(all.Endpoints, e.res.Endpoints...)
		all.FilterChains = append(all.FilterChains, e.res.FilterChains...)
		all.Secrets = append(all.Secrets, e.res.Secrets...)
	}
	l := snapshot.IngressListener(&r.in, all.FilterChains)
	if l == nil {
		b.del(cache.RoleIngress, resource.ListenerType, snapshot.IngressTLSName)
		return
	}
	if err := snapshot.CheckService(&r.in, snapshot.Ingress, all); err != nil {
		r.invalid("ingress listener", zap.Error(err))
		return
	}
	b.set(cache.RoleIngress, resource.ListenerType, l.GetName(), l)
}

// gatewaySecrets sets the secrets no service owns, under names that never
// change, and removes those no longer configured.
func (r *Runner) gatewaySecrets(b *batch) {
	for _, role := range []cache.Role{cache.RoleEgress, cache.RoleIngress} {
		var names []string
		for _, s := range snapshot.GatewaySecrets(&r.in, snapshot.Role(role)) {
			names = append(names, s.GetName())
			b.set(role, resource.SecretType, s.GetName(), s)
		}
		for _, n := range r.gateway[role] {
			if !slices.Contains(names, n) && r.secrets[n] == 0 {
				b.del(role, resource.SecretType, n)
			}
		}
		r.gateway[role] = names
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

func equalAll[M proto.Message](a, b []M) bool {
	return slices.EqualFunc(a, b, func(x, y M) bool { return proto.Equal(x, y) })
}
