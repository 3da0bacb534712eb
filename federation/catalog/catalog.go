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

	"github.com/meshfed/meshfed/federation/store"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/model"
)

// Store is what the catalog needs of the persistent store.
type Store interface {
	PutImport(store.Record) error
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
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.peers[peer]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "peer %q is not configured", peer)
	}
	local := p.LocalName(svc)
	if err := validate.DNSName("alias", local); err != nil {
		return err
	}
	prev, exists := c.imports[peer][id]
	if !exists && p.MaxServices > 0 && len(c.imports[peer]) >= p.MaxServices {
		return status.Errorf(codes.ResourceExhausted, "peer %q is at its maximum of %d services; %q not imported", peer, p.MaxServices, id)
	}
	if owner, taken := c.owners[local]; taken && owner != (importKey{peer, id}) {
		return status.Errorf(codes.AlreadyExists, "fqdn: %q is already imported from peer %q as %q", local, owner.peer, owner.id)
	}
	if name, taken := c.exportFQDNs[local]; taken {
		return status.Errorf(codes.AlreadyExists, "fqdn: %q is already a local export (%q)", local, name)
	}
	imp := &model.Import{Peer: peer, ResourceID: id, LocalFQDN: local, Service: svc}
	if err := c.store.PutImport(store.Record{Peer: peer, ResourceID: id, Service: raw}); err != nil {
		c.log.Error("storing import failed", zap.String("peer", peer), zap.String("resourceId", id), zap.Error(err))
		return status.Errorf(codes.Unavailable, "store: %q not imported, try again", id)
	}
	if exists && prev.LocalFQDN != local {
		delete(c.owners, prev.LocalFQDN)
	}
	if c.imports[peer] == nil {
		c.imports[peer] = map[string]*model.Import{}
	}
	c.imports[peer][id] = imp
	c.owners[local] = importKey{peer, id}
	c.clearRejectionLocked(peer, id)
	c.notifyLocked(Key{Kind: KindImport, Peer: peer, ID: id})
	return nil
}

// Delete removes peer's resource id; deleting what is not there is no error,
// since Hamlet operations are idempotent.
func (c *Catalog) Delete(peer, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearRejectionLocked(peer, id)
	if _, ok := c.imports[peer][id]; !ok {
		return nil
	}
	if err := c.store.DeleteImport(peer, id); err != nil {
		c.log.Error("deleting import failed", zap.String("peer", peer), zap.String("resourceId", id), zap.Error(err))
		return status.Errorf(codes.Unavailable, "store: %q not deleted, try again", id)
	}
	c.dropLocked(peer, id)
	return nil
}

func (c *Catalog) dropLocked(peer, id string) {
	imp := c.imports[peer][id]
	if owner := c.owners[imp.LocalFQDN]; owner == (importKey{peer, id}) {
		delete(c.owners, imp.LocalFQDN)
	}
	delete(c.imports[peer], id)
	c.notifyLocked(Key{Kind: KindImport, Peer: peer, ID: id})
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
		c.notifyLocked(Key{Kind: KindImport, Peer: peer, ID: id})
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
