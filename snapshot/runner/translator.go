package runner

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/cache"
)

// Translator turns changes of imports, exports and certificates into
// changes of the gateways' resources, one service at a time, so that the
// work for a change does not grow with the catalog. It is pure: no I/O, no
// clock, no logging; the same changes in the same order give the same
// result. A service whose translation fails the Envoy checks is rejected
// and keeps its last good resources.
type Translator struct {
	in      snapshot.Input
	imports map[model.Key]*entry
	exports map[string]*entry
	refs    secretRefs
	http    egressHTTP
	ingress sniTable[snapshot.IngressRoute]
	connect sniTable[snapshot.SNIRoute]
	consul  consulNames
	ready   bool
	// rejected are the services whose last translation failed the checks,
	// with the egress port keys of the version that failed: a port kept
	// from before a restart stays reserved while the service waits (for a
	// peer's bundle, say), and is freed if it is deleted instead.
	rejected map[model.Key][]string
}

// entry is what one service contributes to its gateway.
type entry struct {
	res   snapshot.ServiceResources
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
	Secrets *snapshot.Secrets
	// Ports are the egress ports proposed to the changed imports, by
	// snapshot.EgressKey; a key without a port gets no listener.
	Ports map[string]uint32
}

// ImportChange is an import's new value, nil when deleted.
type ImportChange struct {
	Key    model.Key
	Import *model.Import
}

// ExportChange is an export's new value, nil when withdrawn.
type ExportChange struct {
	Name   string
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

// NewTranslator returns a translator of in (its imports, exports, ports and
// secrets are ignored: they come through Apply).
func NewTranslator(in snapshot.Input) *Translator {
	in.Imports, in.Exports, in.EgressPorts, in.Secrets = nil, nil, nil, snapshot.Secrets{}
	return &Translator{
		in:      in,
		imports: map[model.Key]*entry{},
		exports: map[string]*entry{},
		refs:    newSecretRefs(),
		http:    newEgressHTTP(),
		ingress: newIngressRoutes(),
		connect: newConnectRoutes(),
		consul:  newConsulNames(),

		rejected: map[model.Key][]string{},
	}
}

// Apply translates changes. The first Apply builds the whole state: the
// gateway-wide resources (listeners, secrets) come with it.
func (t *Translator) Apply(ch Changes) Result {
	res := Result{Changes: map[model.Role][]cache.Change{}}
	secrets := ch.Secrets != nil
	if secrets {
		t.in.Secrets = *ch.Secrets
	}
	t.in.EgressPorts = ch.Ports
	for _, c := range ch.Imports {
		t.applyImport(&res, c)
	}
	for _, c := range ch.Exports {
		t.applyExport(&res, c)
	}
	t.in.EgressPorts = nil
	first := !t.ready
	t.http.refresh(&res, &t.in)
	t.ingress.refresh(&res, &t.in)
	t.connect.refresh(&res, &t.in)
	if secrets || first {
		t.gatewaySecrets(&res)
		t.consul.leaves(&res, &t.in)
	}
	t.ready = true
	slices.Sort(res.Held)
	res.Freed = minus(sortedUnique(res.Freed), res.Held)
	return res
}

// SetInput replaces what the translation reads of the configuration (as
// NewTranslator, the certificates stay those Apply gave); every service
// must then be applied again.
func (t *Translator) SetInput(in snapshot.Input) {
	in.Imports, in.Exports, in.EgressPorts, in.Secrets = nil, nil, nil, t.in.Secrets
	t.in = in
	t.http.stale, t.ingress.stale, t.connect.stale = true, true, true
}

// Retry lists, sorted, what to translate again when the certificates
// changed: every export (their validation contexts hold the bundles),
// every service that was rejected (a bundle that was missing may be there
// now), and the imports whose Connect route waited for a Consul leaf that
// is in next, the certificates about to be applied.
func (t *Translator) Retry(next snapshot.Secrets) []model.Key {
	keys := make([]model.Key, 0, len(t.exports)+len(t.rejected))
	for name := range t.exports {
		keys = append(keys, model.Key{Kind: model.KindExport, ID: name})
	}
	for k := range t.rejected {
		if k.Kind != model.KindExport || t.exports[k.ID] == nil {
			keys = append(keys, k)
		}
	}
	for _, k := range t.consul.retry(t.in.Consul, next.Consul) {
		if _, rejected := t.rejected[k]; !rejected {
			keys = append(keys, k)
		}
	}
	sortKeys(keys)
	return keys
}

func (t *Translator) applyImport(res *Result, c ImportChange) {
	old := t.imports[c.Key]
	waiting := t.rejected[c.Key]
	delete(t.rejected, c.Key)
	if c.Import == nil {
		res.Freed = append(res.Freed, waiting...)
		if old != nil {
			res.Freed = append(res.Freed, old.ports...)
			t.http.remove(res, old.httpPorts)
			t.remove(res, model.Egress, old)
			t.connect.set(connectKey(c.Key), nil)
			t.consul.set(c.Key, snapshot.ServiceResources{}, &t.in)
			delete(t.imports, c.Key)
		}
		return
	}
	imp := *c.Import
	in := &t.in
	sr := snapshot.EgressResources(in, imp)
	if !t.consul.free(c.Key, sr.ConsulName) {
		in = snapshot.WithoutConsulNames(in)
		sr = snapshot.EgressResources(in, imp)
	}
	ports := snapshot.EgressPortKeys([]model.Import{imp})
	err := snapshot.CheckService(in, model.Egress, sr)
	if err == nil {
		err = t.connect.check("imports", connectKey(c.Key), sr.ConnectRoutes)
	}
	if err != nil {
		// Ports only proposed for it are released by the allocator, as
		// every proposal not held; kept ones stay while it waits.
		res.Rejected = append(res.Rejected, Rejection{Key: c.Key, Err: err})
		res.Freed = append(res.Freed, minus(minus(waiting, ports), heldBy(old))...)
		t.rejected[c.Key] = ports
		return
	}
	e := t.put(res, model.Egress, old, sr)
	// Nothing is needed again: it is in the cache.
	e.res = snapshot.ServiceResources{}
	e.httpPorts = routePorts(sr.HostRoutes)
	e.ports = ports
	res.Held = append(res.Held, ports...)
	res.Freed = append(res.Freed, minus(slices.Concat(heldBy(old), waiting), ports)...)
	t.imports[c.Key] = e
	t.connect.set(connectKey(c.Key), sr.ConnectRoutes)
	t.consul.set(c.Key, sr, &t.in)
	// Counted before the old ones are uncounted: a listener the import
	// keeps stays.
	t.http.add(res, &t.in, e.httpPorts)
	if old != nil {
		t.http.remove(res, old.httpPorts)
	}
}

func (t *Translator) applyExport(res *Result, c ExportChange) {
	old := t.exports[c.Name]
	key := model.Key{Kind: model.KindExport, ID: c.Name}
	delete(t.rejected, key)
	if c.Export == nil {
		if old != nil {
			t.remove(res, model.Ingress, old)
			t.ingress.set(c.Name, nil)
			delete(t.exports, c.Name)
		}
		return
	}
	sr := snapshot.IngressResources(&t.in, *c.Export)
	err := snapshot.CheckService(&t.in, model.Ingress, sr)
	if err == nil {
		err = t.ingress.check("exports", c.Name, sr.IngressRoutes)
	}
	if err != nil {
		res.Rejected = append(res.Rejected, Rejection{Key: key, Err: err})
		t.rejected[key] = nil
		return
	}
	e := t.put(res, model.Ingress, old, sr)
	// Nothing is needed again: it is in the cache.
	e.res = snapshot.ServiceResources{}
	t.ingress.set(c.Name, sr.IngressRoutes)
	t.exports[c.Name] = e
}

// put replaces old (nil for a new service) by the resources of sr.
func (t *Translator) put(res *Result, role model.Role, old *entry, sr snapshot.ServiceResources) *entry {
	e := &entry{res: sr}
	add := func(typeURL, name string, m proto.Message) {
		e.names = append(e.names, typedName{typeURL, name})
		res.set(role, typeURL, name, m)
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
		t.refs.hold(role, s.GetName())
		add(resource.SecretType, s.GetName(), s)
	}
	if old != nil {
		t.drop(res, role, old, e.names)
	}
	return e
}

// remove deletes every resource of old.
func (t *Translator) remove(res *Result, role model.Role, old *entry) { t.drop(res, role, old, nil) }

// drop deletes the resources of old not in keep; a secret goes with the
// last service (or the gateway) that holds it.
func (t *Translator) drop(res *Result, role model.Role, old *entry, keep []typedName) {
	for _, n := range old.names {
		if n.typeURL == resource.SecretType && !t.refs.release(role, n.name) {
			continue
		}
		if !slices.Contains(keep, n) {
			res.del(role, n.typeURL, n.name)
		}
	}
}

// gatewaySecrets sets the secrets no service owns, under names that never
// change, and removes those no longer configured.
func (t *Translator) gatewaySecrets(res *Result) {
	for _, role := range model.GatewayRoles {
		var names []string
		for _, s := range snapshot.GatewaySecrets(&t.in, role) {
			names = append(names, s.GetName())
			res.set(role, resource.SecretType, s.GetName(), s)
		}
		for _, n := range t.refs.setGateway(role, names) {
			res.del(role, resource.SecretType, n)
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
