package cache

import (
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// sentKey holds, in what a wildcard response returned, the version sent:
// the server keeps it with the stream, so that a NACK can be told apart from
// a request for something newer. No resource can have this name.
const sentKey = syncKey

type sotwWatch struct {
	// keyless streams never see a secret that holds a private key.
	keyless bool
	req     *gcache.Request
	sub     gcache.Subscription
	out     chan gcache.Response
}

// CreateWatch implements cache.ConfigWatcher for state-of-the-world streams.
// A wildcard subscription (CDS, LDS) is answered with every resource of the
// type, a named one (EDS, RDS, SDS) with the resources it names.
func (c *Cache) CreateWatch(req *gcache.Request, sub gcache.Subscription, out chan gcache.Response) (func(), error) {
	return c.createWatch(req, sub, out, false)
}

func (c *Cache) createWatch(req *gcache.Request, sub gcache.Subscription, out chan gcache.Response, keyless bool) (func(), error) {
	role, ok := c.roleOf(req.GetNode().GetId())
	if !ok {
		return func() {}, nil
	}
	if !known(req.GetTypeUrl()) {
		return nil, unknownType(req.GetTypeUrl())
	}
	w := &sotwWatch{keyless: keyless, req: req, sub: sub, out: out}

	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.role(role)
	t := rs.typ(req.GetTypeUrl())
	if rs.ready && c.answerSotw(t, w, nil) {
		return func() {}, nil
	}
	t.sotw[w] = struct{}{}
	return func() { c.cancelSotw(t, w) }, nil
}

func (c *Cache) cancelSotw(t *typeState, w *sotwWatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(t.sotw, w)
}

// answerSotw answers the watch if the client misses something and reports
// whether it did. changed is nil for a new watch, else the names changed since
// the watch was last looked at.
//
// A NACK asks for nothing new: the client keeps what it last accepted, and
// the same state sent again would be rejected again, at once and forever.
// So after a NACK the client is answered only once the resources differ
// from those it rejected.
func (c *Cache) answerSotw(t *typeState, w *sotwWatch, changed []logEntry) bool {
	nack := w.req.GetErrorDetail() != nil
	// A client without a version has nothing yet and waits for an answer,
	// empty or not, before it finishes initializing.
	force := w.req.GetVersionInfo() == "" && !nack
	if w.sub.IsWildcard() {
		switch {
		case nack && w.sub.ReturnedResources()[sentKey] == t.contentVersion():
			return false
		case !nack && !force && w.req.GetVersionInfo() == t.contentVersion():
			return false
		}
		c.sendSotw(t, w, t.wildcardAnys(w.keyless), map[string]string{sentKey: t.contentVersion()})
		return true
	}

	names := w.sub.SubscribedResources()
	if !force && !sotwMisses(t, w, names, changed) {
		return false
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		if _, ok := t.visible(n, w.keyless); ok {
			sorted = append(sorted, n)
		}
	}
	slices.Sort(sorted)
	anys := make([]*anypb.Any, len(sorted))
	returned := make(map[string]string, len(sorted))
	for i, n := range sorted {
		r := t.entries[n]
		anys[i] = r.Resource
		returned[n] = r.Version
	}
	c.sendSotw(t, w, anys, returned)
	return true
}

// sotwMisses reports whether a named subscription lacks the current version
// of one of its names. Only the changed names are looked at when known.
func sotwMisses(t *typeState, w *sotwWatch, names map[string]struct{}, changed []logEntry) bool {
	differs := func(n string) bool {
		r, ok := t.visible(n, w.keyless)
		have, had := w.sub.ReturnedResources()[n]
		return ok != had || (ok && r.Version != have)
	}
	if changed != nil {
		for _, e := range changed {
			if _, ok := names[e.name]; ok && differs(e.name) {
				return true
			}
		}
		return false
	}
	for n := range names {
		if differs(n) {
			return true
		}
	}
	return false
}

func (c *Cache) sendSotw(t *typeState, w *sotwWatch, anys []*anypb.Any, returned map[string]string) {
	// The channel has room: one watch per type and stream, and the server
	// drains stale answers before it creates the next.
	w.out <- &sotwResponse{
		req:      w.req,
		returned: returned,
		resp: &discovery.DiscoveryResponse{
			VersionInfo: t.contentVersion(),
			Resources:   anys,
			TypeUrl:     t.typeURL,
		},
	}
}
