package certs

import (
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/model"
)

// Identity gathers every configured role's SVID and the bundle set behind
// one change notification, which is what the xDS layer needs to push SDS
// secrets: on a signal it re-reads all material and pushes it under the
// same secret names. It does not own the sources; their creator closes them.
type Identity struct {
	svids   map[model.Role]SVIDSource
	bundles *BundleSet
	notifier

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewIdentity combines the sources; at most one per role.
func NewIdentity(bundles *BundleSet, svids ...SVIDSource) (*Identity, error) {
	if bundles == nil {
		return nil, fmt.Errorf("certs: identity needs a bundle set")
	}
	id := &Identity{svids: map[model.Role]SVIDSource{}, bundles: bundles, stop: make(chan struct{})}
	for _, s := range svids {
		if _, dup := id.svids[s.Role()]; dup {
			return nil, fmt.Errorf("certs: two SVID sources for role %s", s.Role())
		}
		id.svids[s.Role()] = s
	}
	id.forward(bundles.Subscribe())
	for _, s := range svids {
		id.forward(s.Subscribe())
	}
	return id, nil
}

func (id *Identity) forward(ch <-chan struct{}, cancel func()) {
	id.wg.Add(1)
	go func() {
		defer id.wg.Done()
		defer cancel()
		for {
			select {
			case <-id.stop:
				return
			case <-ch:
				id.notify()
			}
		}
	}()
}

// Source returns a role's SVID source, for TLS configs.
func (id *Identity) Source(r model.Role) (SVIDSource, bool) {
	s, ok := id.svids[r]
	return s, ok
}

// SVID returns a role's current SVID as PEM.
func (id *Identity) SVID(r model.Role) (SVIDMaterial, error) {
	s, ok := id.svids[r]
	if !ok {
		return SVIDMaterial{}, fmt.Errorf("certs: no SVID configured for role %s", r)
	}
	return s.Material()
}

// SVIDStates lists every role's SVID in use, and its last refusal, in
// role order.
func (id *Identity) SVIDStates() []SVIDState {
	var out []SVIDState
	for _, r := range Roles() {
		if s, ok := id.svids[r]; ok {
			out = append(out, s.State())
		}
	}
	return out
}

// Bundles is the bundle set, for TLS configs.
func (id *Identity) Bundles() *BundleSet { return id.bundles }

// Bundle returns a trust domain's current bundle as PEM.
func (id *Identity) Bundle(td spiffeid.TrustDomain) (BundleMaterial, error) {
	return id.bundles.Material(td)
}

// TrustDomains lists the trust domains with a bundle, sorted.
func (id *Identity) TrustDomains() []spiffeid.TrustDomain { return id.bundles.TrustDomains() }

// Close stops forwarding notifications. The sources stay open.
func (id *Identity) Close() error {
	id.closeOnce.Do(func() {
		close(id.stop)
		id.wg.Wait()
	})
	return nil
}
