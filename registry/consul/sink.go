package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/registry"
)

// The meta the sink puts on what it registers. metaManaged on a node (and
// on each service) is how it finds, after a restart, what it registered
// before, and how it knows what is not its own to touch.
const (
	metaManaged   = "meshfed-managed"
	metaPeer      = "meshfed-peer"
	metaName      = "meshfed-name"
	metaFQDN      = "meshfed-fqdn"
	metaLocalFQDN = "meshfed-local-fqdn"
	metaInstance  = "meshfed-instance"
	// metaExternal marks a node that has no Consul agent, which tools such
	// as consul-esm look for.
	metaExternal = "external-node"
	// maxTxnOps is the most operations Consul takes in one transaction.
	maxTxnOps = 64
)

// Sink is a registry.Sink that registers imports in the Consul catalog,
// each peer's on a node of its own with no agent (an external node).
type Sink struct {
	client *api.Client
	cfg    ImportConfig
	// connectPort, when set, is the egress port where Connect sidecars
	// reach the imports: each import gets a Connect proxy there.
	connectPort uint32
	log         *zap.Logger
	mu          sync.Mutex // one Sync or Apply at a time: each plans from what it knows

	// What the last Sync left, and Apply keeps up to date as it writes:
	// the imports by key, the keys of each Consul name, and the nodes
	// meshfed registered with every service on them. synced is false
	// until a Sync succeeded, and again after a failed write.
	synced  bool
	imports map[importKey]registry.Imported
	byName  map[string]map[importKey]bool
	have    map[string]*node
	// nodeOf is the node of each service of have, by Consul name and
	// service id: Apply finds what a change touches without a scan.
	nodeOf map[string]map[string]string
}

// importKey is an import instance: what a service id of the sink stands
// for.
type importKey struct{ peer, name, instance string }

func importKeyOf(im registry.Imported) importKey { return importKey{im.Peer, im.Name, im.Instance} }

// errNotSynced makes the caller Sync: Apply needs what a Sync learnt.
var errNotSynced = errors.New("consul: no complete sync yet: sync first")

// NewSink checks cfg, which must have Import, and connects nothing yet.
func NewSink(cfg Config, log *zap.Logger) (*Sink, error) {
	if cfg.Import == nil {
		return nil, errors.New("consul: import is not configured")
	}
	imp := *cfg.Import
	cfg.Import = &imp
	cfg.Default()
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	// What the sink reads back is what it registered, some 1.5 KB an
	// import; the bound only stops an answer that never ends.
	client, err := cfg.client(maxAnswerBytes)
	if err != nil {
		return nil, err
	}
	sink := &Sink{client: client, cfg: imp, log: log}
	if cfg.Connect != nil {
		sink.connectPort = cfg.Connect.Port
	}
	return sink, nil
}

// node is a synthetic node's services, by service id.
type node struct {
	address  string
	meta     map[string]string
	services map[string]*api.AgentService
}

// Sync implements registry.Sink: it reads what it registered before
// (whichever process did), and writes the difference in transactions.
func (s *Sink) Sync(ctx context.Context, imports []registry.Imported) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced = false
	want := s.desired(imports)
	have, err := s.current(ctx)
	if err != nil {
		return err
	}
	ops, conflicts, err := s.plan(ctx, want, have)
	if err != nil {
		return err
	}
	if err := s.apply(ctx, ops); err != nil {
		return err
	}
	if err := s.registerProxies(ctx, want, have); err != nil {
		return err
	}
	s.imports, s.byName = map[importKey]registry.Imported{}, map[string]map[importKey]bool{}
	for _, im := range imports {
		s.index(im)
	}
	s.have = mirror(have, want, func(*api.AgentService) bool { return true }, conflicted(conflicts))
	s.indexHave()
	s.synced = true
	return errors.Join(conflicts...)
}

// Apply implements registry.ChangeSink: it writes what set and gone
// change of the Consul names they have, from what the last Sync and the
// Applies since learnt, reading nothing back; so a change costs what it
// touches, whatever the number of imports. It refuses to run before a
// Sync succeeded, or after a write failed: Sync then.
func (s *Sink) Apply(ctx context.Context, set, gone []registry.Imported) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.synced {
		return errNotSynced
	}
	names := map[string]bool{}
	for _, im := range slices.Concat(set, gone) {
		if old, ok := s.imports[importKeyOf(im)]; ok {
			names[s.name(old)] = true
		}
		names[s.name(im)] = true
	}
	for _, im := range gone {
		s.unindex(importKeyOf(im))
	}
	for _, im := range set {
		s.unindex(importKeyOf(im))
		s.index(im)
	}
	var subset []registry.Imported
	for name := range names {
		for k := range s.byName[name] {
			subset = append(subset, s.imports[k])
		}
	}
	want := s.desired(subset)
	have := s.part(names, want)
	ops, conflicts, err := s.planChanges(ctx, want, have, s.have)
	if err != nil {
		return err
	}
	s.synced = false
	if err := s.apply(ctx, ops); err != nil {
		return err
	}
	if err := s.registerProxies(ctx, want, have); err != nil {
		return err
	}
	s.update(have, want, conflicted(conflicts))
	s.synced = true
	return errors.Join(conflicts...)
}

// part is what have holds of the Consul names touched (each with its
// Connect proxy): every node with those services only, and every node
// that want names.
func (s *Sink) part(names map[string]bool, want map[string]*node) map[string]*node {
	out := map[string]*node{}
	at := func(name string) *node {
		p := out[name]
		if p == nil {
			n := s.have[name]
			p = &node{address: n.address, meta: n.meta, services: map[string]*api.AgentService{}}
			out[name] = p
		}
		return p
	}
	for name := range names {
		for _, svc := range []string{name, name + connectProxySuffix} {
			for id, nodeName := range s.nodeOf[svc] {
				at(nodeName).services[id] = s.have[nodeName].services[id]
			}
		}
	}
	for name := range want {
		if s.have[name] != nil {
			at(name)
		}
	}
	return out
}

// update makes have what the catalog holds once Apply wrote want over
// part (what have held of the names touched), as mirror does for a whole
// Sync, touching only those nodes and services; a node in skip (its
// write conflicted) is forgotten, as mirror forgets it, until a Sync reads
// it again.
func (s *Sink) update(part, want map[string]*node, skip map[string]bool) {
	for name := range skip {
		if n := s.have[name]; n != nil {
			for id, svc := range n.services {
				s.unindexService(svc.Service, id)
			}
			delete(s.have, name)
		}
	}
	for name, p := range part {
		if skip[name] {
			continue
		}
		for id, svc := range p.services {
			if svc.Meta[metaManaged] == "true" {
				delete(s.have[name].services, id)
				s.unindexService(svc.Service, id)
			}
		}
	}
	for name, w := range want {
		if skip[name] {
			continue
		}
		n := s.have[name]
		if n == nil {
			n = &node{services: map[string]*api.AgentService{}}
			s.have[name] = n
		}
		n.address, n.meta = w.address, w.meta
		for id, svc := range w.services {
			n.services[id] = svc
			s.indexService(svc.Service, id, name)
		}
	}
	for _, touched := range []map[string]*node{part, want} {
		for name := range touched {
			if n := s.have[name]; n != nil && len(n.services) == 0 {
				delete(s.have, name)
			}
		}
	}
}

func (s *Sink) indexHave() {
	s.nodeOf = map[string]map[string]string{}
	for name, n := range s.have {
		for id, svc := range n.services {
			s.indexService(svc.Service, id, name)
		}
	}
}

func (s *Sink) indexService(service, id, node string) {
	if s.nodeOf[service] == nil {
		s.nodeOf[service] = map[string]string{}
	}
	s.nodeOf[service][id] = node
}

func (s *Sink) unindexService(service, id string) {
	delete(s.nodeOf[service], id)
	if len(s.nodeOf[service]) == 0 {
		delete(s.nodeOf, service)
	}
}

func (s *Sink) name(im registry.Imported) string {
	return registry.ImportName(s.cfg.NameTemplate, im.Name, im.Peer)
}

func (s *Sink) index(im registry.Imported) {
	k, name := importKeyOf(im), s.name(im)
	s.imports[k] = im
	if s.byName[name] == nil {
		s.byName[name] = map[importKey]bool{}
	}
	s.byName[name][k] = true
}

func (s *Sink) unindex(k importKey) {
	im, ok := s.imports[k]
	if !ok {
		return
	}
	delete(s.imports, k)
	name := s.name(im)
	delete(s.byName[name], k)
	if len(s.byName[name]) == 0 {
		delete(s.byName, name)
	}
}

// conflictError is a node of a desired name that meshfed did not
// register: nothing of the sink's is written to it.
type conflictError struct {
	node     string
	services int
}

func (e conflictError) Error() string {
	return fmt.Sprintf("consul: node %q exists and meshfed did not register it: its %d imports are not registered", e.node, e.services)
}

// conflicted are the nodes of conflicts.
func conflicted(conflicts []error) map[string]bool {
	out := map[string]bool{}
	for _, err := range conflicts {
		var c conflictError
		if errors.As(err, &c) {
			out[c.node] = true
		}
	}
	return out
}

// mirror is have once want is written over the services mine says are
// in question: the registered state, without reading it back. Nodes in
// skip were not written.
func mirror(have, want map[string]*node, mine func(*api.AgentService) bool, skip map[string]bool) map[string]*node {
	out := make(map[string]*node, len(have)+len(want))
	for name, n := range have {
		if skip[name] {
			continue
		}
		kept := &node{address: n.address, meta: n.meta, services: make(map[string]*api.AgentService, len(n.services))}
		for id, svc := range n.services {
			if !mine(svc) || svc.Meta[metaManaged] != "true" {
				kept.services[id] = svc
			}
		}
		out[name] = kept
	}
	for name, w := range want {
		if skip[name] {
			continue
		}
		n := out[name]
		if n == nil {
			n = &node{services: map[string]*api.AgentService{}}
			out[name] = n
		}
		n.address, n.meta = w.address, w.meta
		for id, svc := range w.services {
			n.services[id] = svc
		}
	}
	for name, n := range out {
		if len(n.services) == 0 {
			delete(out, name)
		}
	}
	return out
}

// desired is the catalog the imports call for. An import that cannot be
// registered is logged and left out, so that it does not hold up others.
func (s *Sink) desired(imports []registry.Imported) map[string]*node {
	sorted := slices.Clone(imports)
	slices.SortFunc(sorted, func(a, b registry.Imported) int {
		return strings.Compare(a.Peer+"\x00"+a.Name+"\x00"+a.Instance, b.Peer+"\x00"+b.Name+"\x00"+b.Instance)
	})
	want := map[string]*node{}
	owner := map[string]string{} // Consul service name → peer/name that has it
	for _, im := range sorted {
		name := registry.ImportName(s.cfg.NameTemplate, im.Name, im.Peer)
		nodeName := s.cfg.NodePrefix + im.Peer
		skip := func(why string) {
			s.log.Warn("import not registered in consul", zap.String("peer", im.Peer), zap.String("service", im.Name),
				zap.String("instance", im.Instance), zap.String("why", why))
		}
		switch {
		case !registry.IsLabel(name):
			skip(fmt.Sprintf("the name template makes %q, which is not a DNS label", name))
			continue
		case !registry.IsLabel(nodeName):
			skip(fmt.Sprintf("node name %q is not a DNS label", nodeName))
			continue
		case im.Instance == "" || im.Port == 0 || im.Port > 65535 || registry.CheckAddress(im.Address) != "" || im.Address == "":
			skip(fmt.Sprintf("instance %q at %q port %d is not an address to register", im.Instance, im.Address, im.Port))
			continue
		}
		if o, ok := owner[name]; ok && o != im.Peer+"/"+im.Name {
			skip(fmt.Sprintf("service name %q is taken by %s; the name template should hold {peer}", name, o))
			continue
		}
		first := owner[name] == ""
		owner[name] = im.Peer + "/" + im.Name
		n := want[nodeName]
		if n == nil {
			n = &node{address: im.Address, meta: map[string]string{metaManaged: "true", metaExternal: "true"}, services: map[string]*api.AgentService{}}
			want[nodeName] = n
		}
		// A service name is a DNS label, so the ':' makes ids unique.
		id := name + ":" + im.Instance
		n.services[id] = &api.AgentService{
			ID:      id,
			Service: name,
			// The instance and protocol as tags make DNS queries such as
			// http.inventory-mesh-b.service.consul possible.
			Tags:    dedupe(im.Instance, strings.ToLower(string(im.Protocol)), "peer-"+im.Peer, importTag),
			Address: im.Address,
			Port:    int(im.Port),
			Meta: map[string]string{
				metaManaged: "true", metaPeer: im.Peer, metaName: im.Name, metaFQDN: im.FQDN,
				metaLocalFQDN: im.LocalFQDN, metaInstance: im.Instance, MetaProtocol: string(im.Protocol),
			},
		}
		// Connect sidecars find an import by its proxy, which the egress
		// serves on the Connect port for the import's first instance.
		proxy := name + connectProxySuffix
		if s.connectPort != 0 && first && registry.IsLabel(proxy) {
			n.services[proxy] = &api.AgentService{
				Kind:    api.ServiceKindConnectProxy,
				ID:      proxy,
				Service: proxy,
				Tags:    dedupe("peer-"+im.Peer, importTag),
				Address: im.Address,
				Port:    int(s.connectPort),
				Proxy:   &api.AgentServiceConnectProxyConfig{DestinationServiceName: name},
				Meta:    map[string]string{metaManaged: "true", metaPeer: im.Peer, metaName: im.Name, metaFQDN: im.FQDN, metaLocalFQDN: im.LocalFQDN},
			}
		}
	}
	return want
}

// connectProxySuffix makes the name of an import's Connect proxy, as
// Consul names a service's sidecar. A service id of the sink otherwise
// holds a ':', so the proxy's id, its name, is no other's.
const connectProxySuffix = "-sidecar-proxy"

// registerProxies registers the Connect proxies that want has and have
// lacks, or has otherwise: one at a time with the catalog's register,
// since Consul's transactions drop a service's kind and proxy settings.
func (s *Sink) registerProxies(ctx context.Context, want, have map[string]*node) error {
	for _, name := range slices.Sorted(maps.Keys(want)) {
		w, h := want[name], have[name]
		for _, id := range slices.Sorted(maps.Keys(w.services)) {
			svc := w.services[id]
			if svc.Kind != api.ServiceKindConnectProxy || h != nil && sameService(h.services[id], svc) {
				continue
			}
			reg := &api.CatalogRegistration{Node: name, Address: w.address, NodeMeta: w.meta, Service: svc, SkipNodeUpdate: true}
			if _, err := s.client.Catalog().Register(reg, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
				return fmt.Errorf("consul: registering the Connect proxy %s on node %s: %w", id, name, err)
			}
		}
	}
	return nil
}

func dedupe(tags ...string) []string {
	var out []string
	for _, t := range tags {
		if t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// current reads the nodes the sink registered, by their meta, with every
// service on them (someone else's included, which plan leaves alone).
func (s *Sink) current(ctx context.Context) (map[string]*node, error) {
	q := (&api.QueryOptions{NodeMeta: map[string]string{metaManaged: "true"}}).WithContext(ctx)
	nodes, _, err := s.client.Catalog().Nodes(q)
	if err != nil {
		return nil, fmt.Errorf("consul: listing the nodes meshfed registered: %w", err)
	}
	have := map[string]*node{}
	for _, n := range nodes {
		cn, _, err := s.client.Catalog().Node(n.Node, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("consul: reading node %q: %w", n.Node, err)
		}
		if cn == nil || cn.Node == nil {
			continue // gone since the listing
		}
		have[n.Node] = &node{address: cn.Node.Address, meta: cn.Node.Meta, services: cn.Services}
	}
	return have, nil
}

// plan lists the operations that turn have into want, in the order a
// transaction needs them: nodes before their services, deletions last.
// A node of the desired name that meshfed did not register is a conflict:
// its imports are left out, and the node untouched.
func (s *Sink) plan(ctx context.Context, want, have map[string]*node) (ops api.TxnOps, conflicts []error, err error) {
	var sets, deletes api.TxnOps
	for _, name := range slices.Sorted(maps.Keys(want)) {
		w, h := want[name], have[name]
		if h == nil {
			cn, _, err := s.client.Catalog().Node(name, (&api.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return nil, nil, fmt.Errorf("consul: reading node %q: %w", name, err)
			}
			if cn != nil && cn.Node != nil {
				conflicts = append(conflicts, conflictError{node: name, services: len(w.services)})
				continue
			}
		}
		if h == nil || h.address != w.address || !maps.Equal(h.meta, w.meta) {
			ops = append(ops, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: name, Address: w.address, Meta: w.meta}}})
		}
		for _, id := range slices.Sorted(maps.Keys(w.services)) {
			if w.services[id].Kind == api.ServiceKindConnectProxy {
				continue // registerProxies
			}
			if h == nil || !sameService(h.services[id], w.services[id]) {
				sets = append(sets, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: name, Service: *w.services[id]}})
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(have)) {
		h, w := have[name], want[name]
		foreign := false
		var ours []string
		for _, id := range slices.Sorted(maps.Keys(h.services)) {
			switch {
			case h.services[id].Meta[metaManaged] != "true":
				foreign = true
			case w == nil || w.services[id] == nil:
				ours = append(ours, id)
			}
		}
		if w == nil && !foreign {
			deletes = append(deletes, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeDelete, Node: api.Node{Node: name}}})
			continue
		}
		for _, id := range ours {
			// Consul wants the name with the id, though the id is enough.
			svc := api.AgentService{ID: id, Service: h.services[id].Service}
			deletes = append(deletes, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceDelete, Node: name, Service: svc}})
		}
	}
	return append(append(ops, sets...), deletes...), conflicts, nil
}

// planChanges is plan for part of the sink's services: have holds, of
// every node, only the services in question, and all is the whole
// registered state, by which a node left with none of the sink's services
// (and no one else's) is deleted.
func (s *Sink) planChanges(ctx context.Context, want, have, all map[string]*node) (ops api.TxnOps, conflicts []error, err error) {
	var deletes api.TxnOps
	for _, name := range slices.Sorted(maps.Keys(have)) {
		h, w := have[name], want[name]
		var gone []string
		for _, id := range slices.Sorted(maps.Keys(h.services)) {
			if h.services[id].Meta[metaManaged] == "true" && (w == nil || w.services[id] == nil) {
				gone = append(gone, id)
			}
		}
		if w == nil && all[name] != nil && len(gone) == len(all[name].services) {
			deletes = append(deletes, &api.TxnOp{Node: &api.NodeTxnOp{Verb: api.NodeDelete, Node: api.Node{Node: name}}})
			continue
		}
		for _, id := range gone {
			svc := api.AgentService{ID: id, Service: h.services[id].Service}
			deletes = append(deletes, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceDelete, Node: name, Service: svc}})
		}
	}
	// Nodes and services to set are planned as Sync plans them, against
	// what is known of the node: a node the sink has not registered is
	// read, to find one of the same name that is someone else's.
	known := map[string]*node{}
	for name, w := range want {
		if n := all[name]; n != nil {
			// Only what want keeps: the deletions are planned above.
			kept := map[string]*api.AgentService{}
			for id := range w.services {
				if svc := have[name].services[id]; svc != nil {
					kept[id] = svc
				}
			}
			known[name] = &node{address: n.address, meta: n.meta, services: kept}
		}
	}
	sets, conflicts, err := s.plan(ctx, want, known)
	if err != nil {
		return nil, nil, err
	}
	return append(sets, deletes...), conflicts, nil
}

func sameService(a, b *api.AgentService) bool {
	return a != nil && a.Service == b.Service && a.Address == b.Address && a.Port == b.Port &&
		slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Meta, b.Meta) && a.Kind == b.Kind &&
		destination(a) == destination(b)
}

// destination is the service a Connect proxy stands for, "" for another
// service.
func destination(s *api.AgentService) string {
	if s.Proxy == nil {
		return ""
	}
	return s.Proxy.DestinationServiceName
}

// apply writes ops in transactions of at most maxTxnOps. Consul checks a
// transaction's ACLs before it applies any of it, and applies all or
// nothing, so a token that may not write one of the operations gets an
// error and changes nothing. Beyond maxTxnOps the transactions go in order
// and stop at the first that fails; the next Sync finishes the work.
func (s *Sink) apply(ctx context.Context, ops api.TxnOps) error {
	if len(ops) == 0 {
		return nil
	}
	n := (len(ops) + maxTxnOps - 1) / maxTxnOps
	for i := range n {
		batch := ops[i*maxTxnOps : min(len(ops), (i+1)*maxTxnOps)]
		ok, resp, _, err := s.client.Txn().Txn(batch, (&api.QueryOptions{}).WithContext(ctx))
		where := fmt.Sprintf("consul: registering imports, transaction %d of %d (%d operations, first: %s)", i+1, n, len(batch), describe(batch[0]))
		if i > 0 {
			where += fmt.Sprintf(" after %d applied", i)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if !ok {
			var why []string
			for _, e := range resp.Errors {
				op := "?"
				if e.OpIndex >= 0 && e.OpIndex < len(batch) {
					op = describe(batch[e.OpIndex])
				}
				why = append(why, fmt.Sprintf("%s: %s", op, e.What))
			}
			return fmt.Errorf("%s: refused, nothing of it written: %s", where, strings.Join(why, "; "))
		}
	}
	s.log.Info("consul catalog synced", zap.Int("operations", len(ops)), zap.Int("transactions", n))
	return nil
}

func describe(op *api.TxnOp) string {
	switch {
	case op.Node != nil:
		return fmt.Sprintf("%s node %s", op.Node.Verb, op.Node.Node.Node)
	case op.Service != nil:
		return fmt.Sprintf("%s service %s on node %s", op.Service.Verb, op.Service.Service.ID, op.Service.Node)
	}
	return "operation"
}
