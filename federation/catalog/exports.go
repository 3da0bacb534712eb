package catalog

import (
	"slices"
	"sort"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/meshfed/meshfed/model"
)

// SetExports replaces the local services offered to peers. Only what changed
// is announced to subscribers.
func (c *Catalog) SetExports(exports []model.Export) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[string]model.Export, len(exports))
	for _, e := range exports {
		next[e.Name] = e
	}
	for name, old := range c.exports {
		if _, ok := next[name]; !ok {
			delete(c.exportFQDNs, old.FQDN)
			delete(c.exports, name)
			c.notifyLocked(model.ExportKey(name))
		}
	}
	for name, e := range next {
		if old, ok := c.exports[name]; ok && exportEqual(old, e) {
			continue
		}
		if old, ok := c.exports[name]; ok {
			delete(c.exportFQDNs, old.FQDN)
		}
		c.exports[name] = e
		c.exportFQDNs[e.FQDN] = name
		c.notifyLocked(model.ExportKey(name))
	}
}

// Export returns one export.
func (c *Catalog) Export(name string) (model.Export, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.exports[name]
	return e, ok
}

// Exports returns every export, sorted by name.
func (c *Catalog) Exports() []model.Export {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]model.Export, 0, len(c.exports))
	for _, e := range c.exports {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ExportedTo lists the names of the exports peer may consume, sorted.
func (c *Catalog) ExportedTo(peer string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []string
	for name, e := range c.exports {
		if slices.Contains(e.Consumers, peer) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ExportFor returns the export if peer may consume it.
func (c *Catalog) ExportFor(peer, name string) (model.Export, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.exports[name]
	if !ok || !slices.Contains(e.Consumers, peer) {
		return model.Export{}, false
	}
	return e, true
}

// Delivered records peer's answer to the export it was last sent.
func (c *Catalog) Delivered(peer, name string, code codes.Code, msg string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.delivered[peer] == nil {
		c.delivered[peer] = map[string]Delivery{}
	}
	c.delivered[peer][name] = Delivery{Acked: code == codes.OK, Code: code, Message: msg, At: at}
}

// Withdrawn forgets what peer answered for an export it no longer has.
func (c *Catalog) Withdrawn(peer, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.delivered[peer], name)
}

// Deliveries returns peer's last answers by export name.
func (c *Catalog) Deliveries(peer string) map[string]Delivery {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]Delivery, len(c.delivered[peer]))
	for k, v := range c.delivered[peer] {
		out[k] = v
	}
	return out
}

func exportEqual(a, b model.Export) bool {
	if a.Name != b.Name || a.FQDN != b.FQDN || a.Description != b.Description || a.Mode != b.Mode ||
		!slices.Equal(a.Tags, b.Tags) || !slices.Equal(a.Consumers, b.Consumers) || len(a.Labels) != len(b.Labels) ||
		!slices.EqualFunc(a.Ports, b.Ports, func(x, y model.ExportPort) bool {
			return x.Name == y.Name && x.Port == y.Port && x.Protocol == y.Protocol && x.SNI == y.SNI && slices.Equal(x.Endpoints, y.Endpoints)
		}) {
		return false
	}
	for k, v := range a.Labels {
		if w, ok := b.Labels[k]; !ok || w != v {
			return false
		}
	}
	return true
}
