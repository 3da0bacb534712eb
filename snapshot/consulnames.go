package snapshot

import (
	"fmt"
	"maps"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/model"
)

// consulNames knows which import has each Consul name (the first to be
// translated keeps it, as two scopes cannot share a key), which imports
// wait for the Consul leaf of theirs before Connect sidecars may reach
// them, and which leaves the egress holds.
type consulNames struct {
	owner   map[string]model.Key
	byKey   map[model.Key]string
	waiting map[model.Key]string
	// trustDomain is Consul's, in the SNIs of the Connect routes served.
	trustDomain string
	// applied are the egress's Consul secrets in the cache, by name, as
	// the material they were made of.
	applied map[string]string
}

func newConsulNames() consulNames {
	return consulNames{owner: map[string]model.Key{}, byKey: map[model.Key]string{}, waiting: map[model.Key]string{}, applied: map[string]string{}}
}

// free says whether the import k may have name ("" is no name).
func (c *consulNames) free(k model.Key, name string) bool {
	owner, taken := c.owner[name]
	return name == "" || !taken || owner == k
}

// set records what the import k was translated into (nothing: it is
// gone).
func (c *consulNames) set(k model.Key, sr ServiceResources, in *view) {
	if old, ok := c.byKey[k]; ok && old != sr.ConsulName {
		delete(c.owner, old)
		delete(c.byKey, k)
	}
	delete(c.waiting, k)
	if sr.ConsulName == "" {
		return
	}
	c.owner[sr.ConsulName], c.byKey[k] = k, sr.ConsulName
	if len(sr.ConnectRoutes) == 0 && in.Consul != nil && in.Consul.ConnectPort != 0 {
		c.waiting[k] = sr.ConsulName
	}
	c.trustDomain = in.Secrets.Consul.TrustDomain
}

// retry lists the imports to translate again now that the certificates
// changed: those whose leaf is there now, or every import with a Consul
// name when Consul's trust domain, in their routes' SNIs, changed.
func (c *consulNames) retry(consul *Consul, next ConsulSecrets) []model.Key {
	if consul == nil {
		return nil
	}
	if next.TrustDomain != c.trustDomain {
		c.trustDomain = next.TrustDomain
		return slices.Collect(maps.Keys(c.byKey))
	}
	var keys []model.Key
	for k, name := range c.waiting {
		_, leaf := next.Leaves[name]
		_, callers := next.Callers[name]
		if leaf && callers && next.TrustDomain != "" && next.Roots != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// leaves sets the egress's Consul secrets (leaves and callers) that
// changed, and removes those gone: a leaf renews on its own, and most
// changes of the certificates touch none.
func (c *consulNames) leaves(res *Result, in *view) {
	now := map[string]string{}
	if in.Consul != nil && in.Consul.ConnectPort != 0 {
		cs := in.Secrets.Consul
		for name, l := range cs.Leaves {
			now[ConsulLeafSecretName(name)] = l.CertChain + "\x00" + l.PrivateKey
		}
		for name, cl := range cs.Callers {
			if cs.Roots != "" && cs.TrustDomain != "" {
				now[ConsulCallersSecretName(name)] = fmt.Sprintf("%s\x00%s\x00%v\x00%q", cs.Roots, cs.TrustDomain, cl.Allow, cl.Except)
			}
		}
	}
	changed := map[string]bool{}
	for name, v := range now {
		if old, ok := c.applied[name]; !ok || old != v {
			changed[name] = true
		}
	}
	if len(changed) > 0 {
		for _, s := range consulEgressSecrets(in) {
			if changed[s.GetName()] {
				res.set(model.Egress, resource.SecretType, s.GetName(), s)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.applied)) {
		if _, ok := now[name]; !ok {
			res.del(model.Egress, resource.SecretType, name)
		}
	}
	c.applied = now
}

// connectKey names an import in the Connect routes' table.
func connectKey(k model.Key) string { return k.Peer + "/" + k.ID }
