package snapshot

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot/cache"
)

// Translator turns changes of imports, exports and certificates into
// changes of the gateways' resources, one service at a time, so that the
// work for a change does not grow with the catalog. It is the one place
// that assembles a gateway: a service's own resources, and those the
// gateway holds because of them all (gateway.go). It is pure: no I/O, no
// clock, no logging; the same changes in the same order give the same
// result. A service whose translation fails the Envoy checks is rejected
// and keeps its last good resources.
type Translator struct {
	v       view
	imports map[model.Key]*entry
	exports map[model.Key]*entry
	shared  sharedParts
	ready   bool
	// resettled is set by SetSettings: the gateway-wide secrets (a
	// bundle per peer) follow the settings too.
	resettled bool
	// rejected are the services whose last translation failed the checks,
	// with the egress port keys of the version that failed: a port kept
	// from before a restart stays reserved while the service waits (for a
	// peer's bundle, say), and is freed if it is deleted instead.
	rejected map[model.Key][]string
}

// entry is what one service contributes to its gateway.
type entry struct {
	names []typedName
	// ports are the egress port keys the import holds.
	ports []string
	// httpPorts are the service ports of an import's routing scopes.
	httpPorts []uint32
}

type typedName struct{ typeURL, name string }

// Changes are what changed since the last Apply.
type Changes struct {
	// Imports and Exports changed, each with its new value or nil when it
	// is gone. Apply takes them in this order.
	Imports []ImportChange
	Exports []ExportChange
	// Secrets, when set, are the gateways' new certificates.
	Secrets *Secrets
	// Ports are the egress ports proposed to the changed imports, by
	// EgressKey; a key without a port gets no listener.
	Ports map[string]uint32
}

// ImportChange is an import's new value, nil when deleted.
type ImportChange struct {
	Key    model.Key
	Import *model.Import
}

// ExportChange is an export's new value, nil when withdrawn.
type ExportChange struct {
	Key    model.Key
	Export *model.Export
}

// Result is what an Apply produced.
type Result struct {
	// Changes are the cache changes of each role.
	Changes map[model.Role][]cache.Change
	// Rejected are the services whose translation failed the checks, in
	// the order they were given.
	Rejected []Rejection
	// Held are the egress port keys the accepted imports hold, Freed the
	// ones no accepted translation holds any more (rejected proposals,
	// deleted imports, instances gone).
	Held, Freed []string
	// Served are the imports whose version in the gateways changed, in
	// the order given: what those who publish the imports (DNS, the
	// registries) follow, without reading the catalog again.
	Served []ServedImport
}

// ServedImport is an import as the gateways now serve it: Import is nil
// when they serve it no more. A rejected version changes nothing: the
// last good one stays served.
type ServedImport struct {
	Key    model.Key
	Import *model.Import
	// Ports are the egress ports its instances are reached on, by
	// instance id: an instance's dedicated port, or the HTTP listener's
	// port it is routed on. An instance without a port is not served.
	Ports map[string]uint32
}

// Rejection is a service left out of the gateways.
type Rejection struct {
	Key model.Key
	Err error
}

func (r *Result) set(role model.Role, typeURL, name string, m proto.Message) {
	r.Changes[role] = append(r.Changes[role], cache.Change{TypeURL: typeURL, Name: name, Resource: m})
}

func (r *Result) del(role model.Role, typeURL, name string) {
	r.Changes[role] = append(r.Changes[role], cache.Change{TypeURL: typeURL, Name: name})
}

// NewTranslator returns a translator of s; the services and the
// certificates come through Apply.
func NewTranslator(s Settings) *Translator {
	return &Translator{
		v:        view{Settings: s},
		imports:  map[model.Key]*entry{},
		exports:  map[model.Key]*entry{},
		shared:   newSharedParts(),
		rejected: map[model.Key][]string{},
	}
}

// Apply translates changes. The first Apply builds the whole state: the
// gateway-wide resources come with it.
func (t *Translator) Apply(ch Changes) Result {
	res := Result{Changes: map[model.Role][]cache.Change{}}
	secrets := ch.Secrets != nil
	if secrets {
		t.v.Secrets = *ch.Secrets
	}
	for _, c := range ch.Imports {
		t.applyImport(&res, c, ch.Ports)
	}
	for _, c := range ch.Exports {
		t.applyExport(&res, c)
	}
	t.shared.refresh(&res, &t.v, secrets || !t.ready || t.resettled)
	t.ready, t.resettled = true, false
	slices.Sort(res.Held)
	res.Freed = minus(sortedUnique(res.Freed), res.Held)
	return res
}

// SetSettings replaces the settings (a reload); every service must then
// be applied again. The certificates stay those Apply gave.
func (t *Translator) SetSettings(s Settings) {
	t.v.Settings = s
	t.shared.stale()
	t.resettled = true
}

// Retry lists, sorted, what to translate again when the certificates
// changed: every export (their validation contexts hold the bundles),
// every service that was rejected (a bundle that was missing may be there
// now), and the imports whose Connect route waited for a Consul leaf that
// is in next, the certificates about to be applied.
func (t *Translator) Retry(next Secrets) []model.Key {
	keys := make([]model.Key, 0, len(t.exports)+len(t.rejected))
	for k := range t.exports {
		keys = append(keys, k)
	}
	for k := range t.rejected {
		if k.Kind != model.KindExport || t.exports[k] == nil {
			keys = append(keys, k)
		}
	}
	for _, k := range t.shared.consul.retry(t.v.Consul, next.Consul) {
		if _, rejected := t.rejected[k]; !rejected {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, model.CompareKeys)
	return keys
}

func (t *Translator) applyImport(res *Result, c ImportChange, proposed map[string]uint32) {
	old := t.imports[c.Key]
	waiting := t.rejected[c.Key]
	delete(t.rejected, c.Key)
	if c.Import == nil {
		res.Freed = append(res.Freed, waiting...)
		if old != nil {
			res.Freed = append(res.Freed, old.ports...)
			t.shared.removeImport(res, c.Key, old.httpPorts, &t.v)
			t.remove(res, model.Egress, old)
			delete(t.imports, c.Key)
			res.Served = append(res.Served, ServedImport{Key: c.Key})
		}
		return
	}
	imp := *c.Import
	in := &t.v
	sr := egressResources(in, imp, proposed)
	if !t.shared.consul.free(c.Key, sr.ConsulName) {
		in = in.withoutConsulNames()
		sr = egressResources(in, imp, proposed)
	}
	ports := EgressPortKeys([]model.Import{imp})
	err := t.shared.check(in, model.Egress, c.Key, sr)
	if err != nil {
		// Ports only proposed for it are released by the allocator, as
		// every proposal not held; kept ones stay while it waits.
		res.Rejected = append(res.Rejected, Rejection{Key: c.Key, Err: err})
		res.Freed = append(res.Freed, minus(minus(waiting, ports), heldBy(old))...)
		t.rejected[c.Key] = ports
		return
	}
	e := t.put(res, model.Egress, old, sr)
	e.httpPorts = routePorts(sr.HostRoutes)
	e.ports = ports
	res.Held = append(res.Held, ports...)
	res.Freed = append(res.Freed, minus(slices.Concat(heldBy(old), waiting), ports)...)
	t.imports[c.Key] = e
	var oldPorts []uint32
	if old != nil {
		oldPorts = old.httpPorts
	}
	t.shared.putImport(res, c.Key, sr, e.httpPorts, oldPorts, &t.v)
	res.Served = append(res.Served, ServedImport{Key: c.Key, Import: c.Import, Ports: servedPorts(imp, proposed)})
}

// servedPorts are the ports imp's instances are reached on, given the
// dedicated ports proposed.
func servedPorts(imp model.Import, proposed map[string]uint32) map[string]uint32 {
	out := make(map[string]uint32, len(imp.Service.Instances))
	for _, inst := range imp.Service.Instances {
		if inst.Protocol.RoutedByHost() {
			out[inst.ID] = HTTPPort(inst)
		} else if p, ok := proposed[EgressKey(imp.Peer, imp.ResourceID, inst.ID)]; ok {
			out[inst.ID] = p
		}
	}
	return out
}

func (t *Translator) applyExport(res *Result, c ExportChange) {
	old := t.exports[c.Key]
	delete(t.rejected, c.Key)
	if c.Export == nil {
		if old != nil {
			t.remove(res, model.Ingress, old)
			t.shared.ingress.set(c.Key.ID, nil)
			delete(t.exports, c.Key)
		}
		return
	}
	sr := ingressResources(&t.v, *c.Export)
	if err := t.shared.check(&t.v, model.Ingress, c.Key, sr); err != nil {
		res.Rejected = append(res.Rejected, Rejection{Key: c.Key, Err: err})
		t.rejected[c.Key] = nil
		return
	}
	t.exports[c.Key] = t.put(res, model.Ingress, old, sr)
	t.shared.ingress.set(c.Key.ID, sr.IngressRoutes)
}

// put replaces old (nil for a new service) by the resources of sr.
func (t *Translator) put(res *Result, role model.Role, old *entry, sr ServiceResources) *entry {
	e := &entry{}
	add := func(typeURL, name string, m proto.Message) {
		n := typedName{typeURL, name}
		e.names = append(e.names, n)
		if !shared(role, typeURL) || t.shared.refs.hold(role, n) {
			res.set(role, typeURL, name, m)
		}
	}
	for _, c := range sr.Clusters {
		add(resource.ClusterType, c.GetName(), c)
	}
	for _, cla := range sr.Endpoints {
		add(resource.EndpointType, cla.GetClusterName(), cla)
	}
	for _, l := range sr.Listeners {
		add(resource.ListenerType, l.GetName(), l)
	}
	for _, hr := range sr.HostRoutes {
		add(resource.ScopedRouteType, hr.Scope.GetName(), hr.Scope)
	}
	for _, s := range sr.Secrets {
		add(resource.SecretType, s.GetName(), s)
	}
	if old != nil {
		t.drop(res, role, old, e.names)
	}
	return e
}

// remove deletes every resource of old.
func (t *Translator) remove(res *Result, role model.Role, old *entry) { t.drop(res, role, old, nil) }

// drop deletes the resources of old not in keep; a shared one goes with
// the last service (or the gateway) that holds it.
func (t *Translator) drop(res *Result, role model.Role, old *entry, keep []typedName) {
	for _, n := range old.names {
		if shared(role, n.typeURL) && !t.shared.refs.release(role, n) {
			continue
		}
		if !slices.Contains(keep, n) {
			res.del(role, n.typeURL, n.name)
		}
	}
}

// Served reports whether the import's resources are in the gateways.
func (t *Translator) Served(k model.Key) bool {
	_, ok := t.imports[k]
	return ok
}

func heldBy(e *entry) []string {
	if e == nil {
		return nil
	}
	return e.ports
}

func routePorts(hrs []HostRoute) []uint32 {
	ports := make([]uint32, len(hrs))
	for i, hr := range hrs {
		ports[i] = hr.Port
	}
	return ports
}

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// minus is a without the elements of b.
func minus(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	drop := make(map[string]bool, len(b))
	for _, s := range b {
		drop[s] = true
	}
	var out []string
	for _, s := range a {
		if !drop[s] {
			out = append(out, s)
		}
	}
	return out
}
