package snapshot

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/model"
)

// sharedParts are what a gateway holds because of its services rather
// than for one of them. This is the one place that decides them, for the
// Translator's state and for the check of one service alike:
//
//   - egress: an HTTP listener on each port a routing scope uses
//     (egressHTTP); the Connect listener while an import has a Connect
//     route (connect), with the Consul leaf and callers of each import's
//     Consul name (consul); the SVID and every peer's bundle.
//   - ingress: the TLS listener, the router listener and its cluster
//     while an export has a server name (ingress); the SVID, Consul's
//     roots and the ingress's Consul leaf.
type sharedParts struct {
	http    egressHTTP
	ingress sniTable[IngressRoute]
	connect sniTable[SNIRoute]
	consul  consulNames
	refs    sharedRefs
}

func newSharedParts() sharedParts {
	return sharedParts{
		http:    newEgressHTTP(),
		ingress: newIngressRoutes(),
		connect: newConnectRoutes(),
		consul:  newConsulNames(),
		refs:    newSharedRefs(),
	}
}

// stale makes every part be built again at the next refresh: the
// settings changed.
func (p *sharedParts) stale() {
	p.http.stale, p.ingress.stale, p.connect.stale = true, true, true
	p.refs.stale()
}

// putImport records the import k translated into sr, whose routing
// scopes are on ports (oldPorts before).
func (p *sharedParts) putImport(res *Result, k model.Key, sr ServiceResources, ports, oldPorts []uint32, in *view) {
	p.connect.set(connectKey(k), sr.ConnectRoutes)
	p.consul.set(k, sr, in)
	// Counted before the old ones are uncounted: a listener the import
	// keeps stays.
	p.http.add(res, in, ports)
	p.http.remove(res, oldPorts)
}

// removeImport forgets the import k, whose routing scopes were on
// oldPorts.
func (p *sharedParts) removeImport(res *Result, k model.Key, oldPorts []uint32, in *view) {
	p.http.remove(res, oldPorts)
	p.connect.set(connectKey(k), nil)
	p.consul.set(k, ServiceResources{}, in)
}

// refresh sets the parts whose services changed, and with secrets the
// gateways' secrets.
func (p *sharedParts) refresh(res *Result, in *view, secrets bool) {
	p.http.refresh(res, in)
	p.ingress.refresh(res, in)
	p.connect.refresh(res, in)
	if secrets {
		p.gatewaySecrets(res, in)
		p.consul.leaves(res, in)
	}
}

// gatewaySecrets sets the secrets no service owns, under names that never
// change, and removes those no longer configured.
func (p *sharedParts) gatewaySecrets(res *Result, in *view) {
	for _, role := range model.GatewayRoles {
		var names []string
		for _, s := range gatewaySecrets(in, role) {
			names = append(names, s.GetName())
			res.set(role, resource.SecretType, s.GetName(), s)
		}
		for _, n := range p.refs.setGateway(role, names) {
			res.del(role, resource.SecretType, n)
		}
	}
}

// check verifies the resources of the service k as Check does, together
// with the shared parts they need, built as for the state, so that a
// change is verified without the rest of the catalog. Across services,
// names cannot collide (they derive from distinct keys) and ports are
// allocated uniquely; what is left, a server name another service has, is
// the SNI tables' to refuse.
func (p *sharedParts) check(in *view, role model.Role, k model.Key, sr ServiceResources) error {
	sr.Secrets = append(slices.Clip(sr.Secrets), gatewaySecrets(in, role)...)
	switch role {
	case model.Egress:
		ports := routePorts(sr.HostRoutes)
		slices.Sort(ports)
		sr.Listeners = slices.Clip(sr.Listeners)
		for _, port := range slices.Compact(ports) {
			sr.Listeners = append(sr.Listeners, p.http.build(in, port))
		}
		ls, _ := p.connect.build(in, sr.ConnectRoutes)
		sr.Listeners = append(sr.Listeners, ls...)
		if len(ls) > 0 {
			sr.Secrets = append(sr.Secrets, consulLeafSecret(in, sr.ConsulName), consulCallersSecret(in, sr.ConsulName))
		}
	case model.Ingress:
		ls, cs := p.ingress.build(in, sr.IngressRoutes)
		sr.Listeners = append(slices.Clip(sr.Listeners), ls...)
		sr.Clusters = append(slices.Clip(sr.Clusters), cs...)
	}
	if err := Check(&Resources{ByRole: map[model.Role]map[resource.Type][]types.Resource{role: sr.byType()}}); err != nil {
		return err
	}
	if role == model.Ingress {
		return p.ingress.check("exports", k.ID, sr.IngressRoutes)
	}
	return p.connect.check("imports", connectKey(k), sr.ConnectRoutes)
}
