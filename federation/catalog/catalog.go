// Package catalog is the agent's one state of federated services: what each
// peer published to it (imports, written through to the store before they
// are acknowledged) and what it offers to peers (exports).
package catalog

import (
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/store"
)

// Store is what the catalog needs of the persistent store.
type Store interface {
	WriteImports([]store.ImportWrite) error
	DeleteImport(peer, resourceID string) error
	SetStale(peer string, since time.Time) error
	DeletePeer(peer string) error
}

// Peer is a configured peer as the catalog needs it.
type Peer struct {
	model.Peer
	// MaxServices caps the peer's imports; 0 means no cap.
	MaxServices int
	// Alias, when set, gives the peer's services another local name:
	// {name}, {fqdn} and {peer} are replaced.
	Alias  string
	Policy validate.Policy
}

// LocalName is the name an import of the peer has in the local registry.
func (p *Peer) LocalName(s model.Service) string {
	if p.Alias == "" {
		return s.FQDN
	}
	return strings.NewReplacer("{name}", s.Name, "{fqdn}", s.FQDN, "{peer}", p.Name).Replace(p.Alias)
}

// Delivery is what a peer last answered to a service this agent published.
type Delivery struct {
	Acked   bool       `json:"acked"`
	Code    codes.Code `json:"code"`
	Message string     `json:"message,omitempty"`
	At      time.Time  `json:"at"`
}

// Catalog is safe for concurrent use.
type Catalog struct {
	store Store
	log   *zap.Logger

	mu          sync.RWMutex
	peers       map[string]*Peer
	imports     map[string]map[string]*model.Import // peer → resource id
	owners      map[string]importKey                // local fqdn → import
	exports     map[string]model.Export             // name
	exportFQDNs map[string]string                   // fqdn → export name
	delivered   map[string]map[string]Delivery      // peer → export name
	rejected    map[string]map[string]Rejection     // peer → resource id
	subs        map[*Subscription]struct{}
}

type importKey struct{ peer, id string }

// New is an empty catalog writing imports through to st.
func New(st Store, log *zap.Logger) *Catalog {
	return &Catalog{
		store:       st,
		log:         log,
		peers:       map[string]*Peer{},
		imports:     map[string]map[string]*model.Import{},
		owners:      map[string]importKey{},
		exports:     map[string]model.Export{},
		exportFQDNs: map[string]string{},
		delivered:   map[string]map[string]Delivery{},
		rejected:    map[string]map[string]Rejection{},
		subs:        map[*Subscription]struct{}{},
	}
}

// SetPeers replaces the configured peers. The imports of a peer that is no
// longer configured are removed, from the store too.
func (c *Catalog) SetPeers(peers []Peer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[string]*Peer, len(peers))
	for i := range peers {
		p := peers[i]
		next[p.Name] = &p
	}
	for name := range c.imports {
		if _, ok := next[name]; ok {
			continue
		}
		if err := c.store.DeletePeer(name); err != nil {
			return err
		}
		for id := range c.imports[name] {
			c.dropLocked(name, id)
		}
		delete(c.imports, name)
		c.log.Info("removed imports of unconfigured peer", zap.String("peer", name))
	}
	for name := range c.delivered {
		if _, ok := next[name]; !ok {
			delete(c.delivered, name)
		}
	}
	for name := range c.rejected {
		if _, ok := next[name]; !ok {
			delete(c.rejected, name)
		}
	}
	c.peers = next
	return nil
}

// Peer is the configuration of the named peer.
func (c *Catalog) Peer(name string) (Peer, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.peers[name]
	if !ok {
		return Peer{}, false
	}
	return *p, true
}

// Upsert stores svc as peer's resource id, then makes it visible. It returns
// a gRPC status error when the service cannot be taken; the previous version
// then stays.
func (c *Catalog) Upsert(peer, id string, svc model.Service, raw []byte) error {
	return c.Apply(peer, []ImportChange{{ID: id, Service: svc, Raw: raw}})[0]
}

// Delete removes peer's resource id; deleting what is not there is no error,
// since Hamlet operations are idempotent.
func (c *Catalog) Delete(peer, id string) error {
	return c.Apply(peer, []ImportChange{{ID: id, Delete: true}})[0]
}

// ImportChange is one operation of a peer on one of its services, as a
// response carried it: an upsert of Service, whose bytes as received are
// Raw (what is stored), or with Delete a removal.
type ImportChange struct {
	ID      string
	Delete  bool
	Service model.Service
	Raw     []byte
}

// Apply applies peer's changes in order, each checked against the catalog
// as the changes before it left it, as Upsert and Delete would one by one;
// but every change it takes is stored in one transaction, before any of
// them becomes visible. errs[i] is nil when change i was taken, else the
// gRPC status error to NACK it with. When the store write fails, every
// change is refused with Unavailable and nothing changes, in memory or in
// the store.
func (c *Catalog) Apply(peer string, changes []ImportChange) (errs []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs = make([]error, len(changes))
	j := journal{c: c, peer: peer}
	writes := make([]store.ImportWrite, 0, len(changes))
	for i, ch := range changes {
		if ch.Delete {
			if _, ok := c.imports[peer][ch.ID]; ok {
				j.drop(ch.ID)
				writes = append(writes, store.ImportWrite{Record: store.Record{Peer: peer, ResourceID: ch.ID}, Delete: true})
			}
			continue
		}
		imp, err := c.checkUpsertLocked(peer, ch)
		if err != nil {
			errs[i] = err
			continue
		}
		j.put(imp)
		writes = append(writes, store.ImportWrite{Record: store.Record{Peer: peer, ResourceID: ch.ID, Service: ch.Raw}})
	}
	if err := c.write(writes); err != nil {
		j.undo()
		c.log.Error("storing imports failed", zap.String("peer", peer), zap.Int("writes", len(writes)), zap.Error(err))
		for i, ch := range changes {
			if ch.Delete {
				errs[i] = status.Errorf(codes.Unavailable, "store: %q not deleted, try again", ch.ID)
			} else {
				errs[i] = status.Errorf(codes.Unavailable, "store: %q not imported, try again", ch.ID)
			}
		}
		return errs
	}
	for i, ch := range changes {
		if errs[i] == nil {
			c.clearRejectionLocked(peer, ch.ID)
		}
	}
	for _, id := range j.ids {
		c.notifyLocked(model.Key{Kind: model.KindImport, Peer: peer, ID: id})
	}
	return errs
}

// write stores ws in one transaction; with nothing to store, it opens none.
func (c *Catalog) write(ws []store.ImportWrite) error {
	if len(ws) == 0 {
		return nil
	}
	return c.store.WriteImports(ws)
}

// checkUpsertLocked is the import ch would make, or why it cannot be taken.
func (c *Catalog) checkUpsertLocked(peer string, ch ImportChange) (*model.Import, error) {
	p, ok := c.peers[peer]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "peer %q is not configured", peer)
	}
	local := p.LocalName(ch.Service)
	if err := validate.DNSName("alias", local); err != nil {
		return nil, err
	}
	if _, exists := c.imports[peer][ch.ID]; !exists && p.MaxServices > 0 && len(c.imports[peer]) >= p.MaxServices {
		return nil, status.Errorf(codes.ResourceExhausted, "peer %q is at its maximum of %d services; %q not imported", peer, p.MaxServices, ch.ID)
	}
	if owner, taken := c.owners[local]; taken && owner != (importKey{peer, ch.ID}) {
		return nil, status.Errorf(codes.AlreadyExists, "fqdn: %q is already imported from peer %q as %q", local, owner.peer, owner.id)
	}
	if name, taken := c.exportFQDNs[local]; taken {
		return nil, status.Errorf(codes.AlreadyExists, "fqdn: %q is already a local export (%q)", local, name)
	}
	return &model.Import{Peer: peer, ResourceID: ch.ID, LocalFQDN: local, Service: ch.Service}, nil
}

// journal changes one peer's imports in memory ahead of the store write
// that makes them durable, keeping what each key held before the first
// change, so that a failed write can put it all back.
type journal struct {
	c    *Catalog
	peer string
	// ids are the resource ids changed, in order of first change.
	ids     []string
	imports map[string]*model.Import // id → before; nil: absent
	owners  map[string]ownerBefore   // local fqdn → before
}

type ownerBefore struct {
	key importKey
	ok  bool
}

func (j *journal) saveImport(id string) {
	if j.imports == nil {
		j.imports, j.owners = map[string]*model.Import{}, map[string]ownerBefore{}
	}
	if _, ok := j.imports[id]; ok {
		return
	}
	j.imports[id] = j.c.imports[j.peer][id]
	j.ids = append(j.ids, id)
}

func (j *journal) saveOwner(local string) {
	if _, ok := j.owners[local]; ok {
		return
	}
	key, ok := j.c.owners[local]
	j.owners[local] = ownerBefore{key: key, ok: ok}
}

func (j *journal) put(imp *model.Import) {
	c := j.c
	j.saveImport(imp.ResourceID)
	if prev, ok := c.imports[j.peer][imp.ResourceID]; ok && prev.LocalFQDN != imp.LocalFQDN {
		j.saveOwner(prev.LocalFQDN)
		delete(c.owners, prev.LocalFQDN)
	}
	if c.imports[j.peer] == nil {
		c.imports[j.peer] = map[string]*model.Import{}
	}
	c.imports[j.peer][imp.ResourceID] = imp
	j.saveOwner(imp.LocalFQDN)
	c.owners[imp.LocalFQDN] = importKey{j.peer, imp.ResourceID}
}

func (j *journal) drop(id string) {
	c := j.c
	j.saveImport(id)
	imp := c.imports[j.peer][id]
	if owner := c.owners[imp.LocalFQDN]; owner == (importKey{j.peer, id}) {
		j.saveOwner(imp.LocalFQDN)
		delete(c.owners, imp.LocalFQDN)
	}
	delete(c.imports[j.peer], id)
}

// undo puts back what the journaled changes replaced.
func (j *journal) undo() {
	c := j.c
	for id, prev := range j.imports {
		if prev == nil {
			delete(c.imports[j.peer], id)
		} else {
			c.imports[j.peer][id] = prev
		}
	}
	for local, was := range j.owners {
		if was.ok {
			c.owners[local] = was.key
		} else {
			delete(c.owners, local)
		}
	}
}

func (c *Catalog) dropLocked(peer, id string) {
	imp := c.imports[peer][id]
	if owner := c.owners[imp.LocalFQDN]; owner == (importKey{peer, id}) {
		delete(c.owners, imp.LocalFQDN)
	}
	delete(c.imports[peer], id)
	c.notifyLocked(model.Key{Kind: model.KindImport, Peer: peer, ID: id})
}

// Reconcile removes the imports of peer that keep does not hold: after a
// resync, what the peer did not send again, it no longer has.
func (c *Catalog) Reconcile(peer string, keep map[string]struct{}) (removed int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.rejected[peer] {
		if _, ok := keep[id]; !ok {
			c.clearRejectionLocked(peer, id)
		}
	}
	for id := range c.imports[peer] {
		if _, ok := keep[id]; ok {
			continue
		}
		if err := c.store.DeleteImport(peer, id); err != nil {
			return removed, err
		}
		c.dropLocked(peer, id)
		removed++
	}
	return removed, nil
}

// MarkStale marks every import of peer as stale since the given time, or
// fresh again with the zero time.
func (c *Catalog) MarkStale(peer string, since time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.store.SetStale(peer, since); err != nil {
		return err
	}
	for id, imp := range c.imports[peer] {
		if imp.StaleSince.Equal(since) {
			continue
		}
		cp := *imp
		cp.StaleSince = since
		c.imports[peer][id] = &cp
		c.notifyLocked(model.Key{Kind: model.KindImport, Peer: peer, ID: id})
	}
	return nil
}

// ExpireStale removes the imports of peer that have been stale since before
// the given time.
func (c *Catalog) ExpireStale(peer string, before time.Time) (removed int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, imp := range c.imports[peer] {
		if imp.StaleSince.IsZero() || !imp.StaleSince.Before(before) {
			continue
		}
		if err := c.store.DeleteImport(peer, id); err != nil {
			return removed, err
		}
		c.dropLocked(peer, id)
		removed++
	}
	return removed, nil
}

// Import returns one import.
func (c *Catalog) Import(peer, id string) (model.Import, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	imp, ok := c.imports[peer][id]
	if !ok {
		return model.Import{}, false
	}
	return *imp, true
}

// Imports returns every import, sorted by peer then resource id.
func (c *Catalog) Imports() []model.Import {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []model.Import
	for _, byID := range c.imports {
		for _, imp := range byID {
			out = append(out, *imp)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Peer != out[j].Peer {
			return out[i].Peer < out[j].Peer
		}
		return out[i].ResourceID < out[j].ResourceID
	})
	return out
}

// ImportCount is the number of imports of peer.
func (c *Catalog) ImportCount(peer string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.imports[peer])
}
