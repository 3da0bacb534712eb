package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/store"
)

// The federation every run simulates: mesh-a (this agent, whose egress
// gateways are measured) imports every service from mesh-b.
const (
	localTD  = "mesh-a.example"
	peerName = "mesh-b"
	peerTD   = "mesh-b.example"
)

// tcpEvery makes every tcpEvery-th service TCP (a dedicated egress listener
// on its own port); the others are HTTP (a routing scope on the shared
// HTTP listener). Both reach the owner through their upstream's cluster.
const tcpEvery = 4

// endpointsPerService is how many owner ingress endpoints (IPs) each
// service lists.
const endpointsPerService = 2

// ingressGateways is how many ingress gateways the owner has (one per
// zone, say). A service's endpoints are the addresses of one of them, as
// every Hamlet owner publishes its services (a meshfed owner lists the
// same ingress for all): the services on one gateway share an upstream,
// and a cluster per protocol in the egress. An endpoints change moves a
// service to another of the owner's ingress gateways.
const ingressGateways = 4

// ownerIngress are the endpointsPerService addresses of the owner's
// ingress gateway gw.
func ownerIngress(gw int) []model.Endpoint {
	eps := make([]model.Endpoint, endpointsPerService)
	for i := range eps {
		eps[i] = model.Endpoint{Address: fmt.Sprintf("10.255.%d.%d", gw, i+1), Port: 15443}
	}
	return eps
}

// The kinds of change the workloads make.
type changeKind int

const (
	kindEndpoints changeKind = iota // the service moves to another ingress gateway of its owner: the listener or route names that upstream's cluster
	kindEdit                        // SANs change (a cluster of the service's own, which its listener or route names), and for HTTP the host rewrite
	kindAdd                         // a new service
	kindRemove                      // a service goes
)

var kindNames = [...]string{"endpoints", "edit", "add", "remove"}

func (k changeKind) String() string { return kindNames[k] }

// change is one catalog change the harness makes.
type change struct {
	id    uint64
	kind  changeKind
	scope string        // what it touches: see scopeOf
	rid   string        // resource id
	old   *model.Import // nil for an add
	new   *model.Import // nil for a remove
}

// generator makes the services of a run and their changes, deterministically
// from its seed. It is used by one goroutine.
type generator struct {
	rnd     *rand.Rand
	next    int // number of the next new service
	rev     int // keeps every edit distinct
	changes uint64
	live    []string // resource ids in the catalog, for picking
	index   map[string]int
	// imports are the services changes were drawn for, as the last drawn
	// change left them (possibly not in the catalog yet); the others are
	// as the catalog holds them. The generator holds no more, so that the
	// heap per service measures the catalog and not the harness.
	imports map[string]model.Import
	cat     *catalog.Catalog
	policy  validate.Policy
}

func newGenerator(seed uint64, cat *catalog.Catalog) *generator {
	return &generator{
		rnd:     rand.New(rand.NewPCG(seed, 0x6d657368666564)),
		index:   map[string]int{},
		imports: map[string]model.Import{},
		cat:     cat,
		policy:  validate.Policy{TrustDomain: spiffeid.RequireTrustDomainFromString(peerTD)},
	}
}

// otherIngress is the endpoints of another of the owner's ingress
// gateways than the one eps are.
func (g *generator) otherIngress(eps []model.Endpoint) []model.Endpoint {
	for {
		gw := g.rnd.IntN(ingressGateways)
		if other := ownerIngress(gw); len(eps) == 0 || other[0].Address != eps[0].Address {
			return other
		}
	}
}

// service is the i-th service as the owner publishes it.
func (g *generator) service(i int) model.Service {
	name := fmt.Sprintf("svc-%06d", i)
	inst := model.Instance{ID: "http", Protocol: model.HTTP, Port: 8080}
	if i%tcpEvery == 0 {
		inst = model.Instance{ID: "tcp", Protocol: model.TCP, Port: 5432}
	}
	return model.Service{
		Name:      name,
		FQDN:      name + "." + peerTD,
		Endpoints: ownerIngress(i % ingressGateways),
		SANs:      []string{"spiffe://" + peerTD + "/meshfed/gateway/ingress"},
		Instances: []model.Instance{inst},
	}
}

// record validates svc as the consumer would on receipt and returns it as
// the catalog and the store hold it.
func (g *generator) record(svc model.Service) (model.Service, []byte, error) {
	fs := wire.FromModel(svc)
	raw, err := proto.Marshal(fs)
	if err != nil {
		return model.Service{}, nil, err
	}
	v, err := validate.Service(fs, g.policy)
	if err != nil {
		return model.Service{}, nil, fmt.Errorf("generated service %s: %w", svc.Name, err)
	}
	return v, raw, nil
}

func (g *generator) track(rid string) {
	if _, ok := g.index[rid]; !ok {
		g.index[rid] = len(g.live)
		g.live = append(g.live, rid)
	}
}

func (g *generator) untrack(rid string) {
	i := g.index[rid]
	last := g.live[len(g.live)-1]
	g.live[i], g.index[last] = last, i
	g.live = g.live[:len(g.live)-1]
	delete(g.index, rid)
	delete(g.imports, rid)
}

func importOf(svc model.Service) model.Import {
	return model.Import{Peer: peerName, ResourceID: svc.Name, LocalFQDN: svc.FQDN, Service: svc}
}

// initial returns the store records of the first n services.
func (g *generator) initial(n int) ([]store.Record, error) {
	recs := make([]store.Record, 0, n)
	for ; g.next < n; g.next++ {
		svc, raw, err := g.record(g.service(g.next))
		if err != nil {
			return nil, err
		}
		g.track(svc.Name)
		recs = append(recs, store.Record{Peer: peerName, ResourceID: svc.Name, Service: raw})
	}
	return recs, nil
}

// mixed draws a change of the churn mix: 80% endpoint changes, 15% edits,
// 5% adds and removes (alternating, so the catalog keeps its size).
func (g *generator) mixed() changeKind {
	switch r := g.rnd.IntN(100); {
	case r < 80:
		return kindEndpoints
	case r < 95:
		return kindEdit
	case g.changes%2 == 0:
		return kindAdd
	default:
		return kindRemove
	}
}

// make draws the next change of a kind; the catalog still has to be told.
func (g *generator) make(kind changeKind) (*change, error) {
	if kind == kindRemove && len(g.live) < 2 {
		kind = kindAdd
	}
	g.changes++
	c := &change{id: g.changes, kind: kind}
	if kind == kindAdd {
		svc, _, err := g.record(g.service(g.next))
		if err != nil {
			return nil, err
		}
		g.next++
		imp := importOf(svc)
		c.rid, c.new = svc.Name, &imp
		g.track(imp.ResourceID)
		g.imports[imp.ResourceID] = imp
		return c, nil
	}
	c.rid = g.live[g.rnd.IntN(len(g.live))]
	old, ok := g.imports[c.rid]
	if !ok {
		if old, ok = g.cat.Import(peerName, c.rid); !ok {
			return nil, fmt.Errorf("%s is neither drawn nor in the catalog", c.rid)
		}
	}
	c.old = &old
	if kind == kindRemove {
		g.untrack(c.rid)
		return c, nil
	}
	svc := old.Service
	svc.Instances = slices.Clone(svc.Instances)
	switch kind {
	case kindEndpoints:
		svc.Endpoints = g.otherIngress(svc.Endpoints)
	case kindEdit:
		g.rev++
		svc.SANs = []string{"spiffe://" + peerTD + "/meshfed/gateway/ingress-" + strconv.Itoa(g.rev)}
		for i := range svc.Instances {
			if svc.Instances[i].Protocol.RoutedByHost() {
				svc.Instances[i].Hostname = "rev-" + strconv.Itoa(g.rev) + "." + svc.FQDN
			}
		}
	}
	v, _, err := g.record(svc)
	if err != nil {
		return nil, err
	}
	imp := importOf(v)
	c.new = &imp
	g.imports[imp.ResourceID] = imp
	return c, nil
}

// apply makes the change in the catalog, as a peer's session would.
func apply(cat *catalog.Catalog, c *change) error {
	if c.new == nil {
		return cat.Delete(peerName, c.rid)
	}
	raw, err := proto.Marshal(wire.FromModel(c.new.Service))
	if err != nil {
		return err
	}
	return cat.Upsert(peerName, c.rid, c.new.Service, raw)
}

// pki is the certificate material of the simulated meshes.
type pki struct {
	cas     map[string]*certs.CA
	secrets snapshot.Secrets
}

func newPKI() (*pki, error) {
	p := &pki{cas: map[string]*certs.CA{}, secrets: snapshot.Secrets{SVIDs: map[model.Role]snapshot.SVID{}, Bundles: map[string]string{}}}
	for _, td := range []string{localTD, peerTD} {
		ca, err := certs.NewTestCA(spiffeid.RequireTrustDomainFromString(td))
		if err != nil {
			return nil, err
		}
		p.cas[td] = ca
		p.secrets.Bundles[td] = string(ca.CertPEM())
	}
	ca := p.cas[localTD]
	for _, role := range model.GatewayRoles {
		chain, key, err := ca.Issue(spiffeid.RequireFromPath(ca.TrustDomain(), "/meshfed/gateway/"+string(role)), 24*time.Hour)
		if err != nil {
			return nil, err
		}
		p.secrets.SVIDs[role] = snapshot.SVID{CertChain: string(chain), PrivateKey: string(key)}
	}
	return p, nil
}

// input is the translation input of mesh-a without imports.
func (p *pki) input() snapshot.Input {
	return snapshot.Input{
		Settings: snapshot.Settings{
			TrustDomain: localTD,
			Peers:       []model.Peer{{Name: peerName, TrustDomain: peerTD}},
			Gateways: snapshot.Gateways{
				Egress:  snapshot.Address{Address: "0.0.0.0"},
				Ingress: snapshot.SocketAddress{Address: "0.0.0.0", Port: 15443},
			},
		},
		Secrets: p.secrets,
	}
}

func catalogPeers() []catalog.Peer {
	return []catalog.Peer{{
		Peer:   model.Peer{Name: peerName, TrustDomain: peerTD},
		Policy: validate.Policy{TrustDomain: spiffeid.RequireTrustDomainFromString(peerTD)},
	}}
}
