package cache

import (
	"errors"
	"maps"
	"slices"
	"strings"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"go.uber.org/zap"
)

// syncKey holds, in a delta stream's version map, the sequence number the map
// is synced to. No resource can have this name (prepare rejects it) and the
// server never sends the map to the client.
const syncKey = "\x00meshfed.synced"

// wildcard is the explicit wildcard subscription of xDS.
const wildcard = "*"

type deltaWatch struct {
	// keyless streams never see a secret that holds a private key.
	keyless bool
	req     *gcache.DeltaRequest
	sub     gcache.Subscription
	out     chan gcache.DeltaResponse

	// known is a copy of the stream's version map (sub.ReturnedResources(),
	// which the cache must not alter): the cache updates the copy and hands
	// it back as the response's next version map, which the server keeps.
	//
	// Once synced, the map holds only the sync marker: a stream synced at seq
	// has every subscribed resource as it was at seq, and what changed since
	// is in the type's log. So a gateway costs the cache no memory per
	// resource, and a response costs O(changes), not O(catalog). Names only
	// appear in it when the server puts them there (initial versions of a
	// reconnecting client, an unsubscribed wildcard name), and the cache
	// drops them once looked at.
	known map[string]string
}

// ErrStreamBehind ends a delta stream that fell so far behind that the log of
// changes no longer reaches its state: the gateway reconnects and sends the
// versions it has, from which it is synced exactly.
var ErrStreamBehind = errors.New("xDS stream fell behind the change log; reconnect")

// CreateDeltaWatch implements cache.ConfigWatcher.
func (c *Cache) CreateDeltaWatch(req *gcache.DeltaRequest, sub gcache.Subscription, out chan gcache.DeltaResponse) (func(), error) {
	return c.createDeltaWatch(req, sub, out, false)
}

func (c *Cache) createDeltaWatch(req *gcache.DeltaRequest, sub gcache.Subscription, out chan gcache.DeltaResponse, keyless bool) (func(), error) {
	role, ok := c.roleOf(req.GetNode().GetId())
	if !ok {
		return func() {}, nil
	}
	if !known(req.GetTypeUrl()) {
		return nil, unknownType(req.GetTypeUrl())
	}
	// Once synced the map holds only the marker, so the copy is small; a
	// reconnecting client's initial versions are copied once.
	known := maps.Clone(sub.ReturnedResources())
	if known == nil {
		known = make(map[string]string)
	}
	w := &deltaWatch{keyless: keyless, req: req, sub: sub, out: out, known: known}

	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.role(role)
	t := rs.typ(req.GetTypeUrl())
	if rs.ready {
		answered, err := c.catchUpDelta(t, w)
		if err != nil {
			c.log.Info("closing delta stream", zap.String("node_id", req.GetNode().GetId()), zap.String("type_url", t.typeURL), zap.Error(err))
			return nil, err
		}
		if answered {
			return func() {}, nil
		}
	}
	t.delta[w] = struct{}{}
	return func() { c.cancelDelta(t, w) }, nil
}

// cancelDelta forgets a watch the server cancels, because a new request of
// the stream replaces it. The stream's marker stays that of its last
// response: the cache tells go-control-plane what a stream holds only
// through its responses' next version maps, which the server keeps and
// hands to the next watch (TestDeltaResumeContract). A stream that nothing
// concerned for so long that the log no longer reaches its marker is
// closed with ErrStreamBehind, and resyncs exactly on reconnect.
func (c *Cache) cancelDelta(t *typeState, w *deltaWatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(t.delta, w)
}

// catchUpDelta answers a new watch with what the stream misses, if anything,
// and reports whether it did. A synced stream only looks at the changes
// since its marker and at the names of this request; any other compares its
// whole subscription with the versions the server passed in.
func (c *Cache) catchUpDelta(t *typeState, w *deltaWatch) (bool, error) {
	seq, synced := c.syncedAt(w.known)
	if synced && slices.Contains(w.req.GetResourceNamesSubscribe(), wildcard) {
		// Newly wildcard: everything not yet known is missed.
		synced = false
	}
	var d deltaDiff
	if synced {
		since, ok := t.changedSince(seq)
		if !ok {
			return false, ErrStreamBehind
		}
		d.dedupe = len(since)+len(w.req.GetResourceNamesSubscribe())+len(w.req.GetResourceNamesUnsubscribe()) > 1
		for _, e := range since {
			d.name(t, w, e.name, true)
		}
		for _, n := range w.req.GetResourceNamesSubscribe() {
			d.name(t, w, n, false)
		}
		for _, n := range w.req.GetResourceNamesUnsubscribe() {
			d.name(t, w, n, false)
		}
	} else {
		d.full(t, w)
	}
	// Envoy waits for a first answer to a wildcard subscription before it
	// finishes initializing, even when there is nothing to send.
	initial := w.sub.IsWildcard() && w.req.GetResponseNonce() == ""
	return c.sendDelta(t, w, &d, initial), nil
}

// answerDelta answers an open watch with the changes it subscribes to, if
// any, and reports whether it did.
func (c *Cache) answerDelta(t *typeState, w *deltaWatch, changed []logEntry) bool {
	d := deltaDiff{dedupe: len(changed) > 1}
	for _, e := range changed {
		d.name(t, w, e.name, true)
	}
	return c.sendDelta(t, w, &d, false)
}

func (c *Cache) sendDelta(t *typeState, w *deltaWatch, d *deltaDiff, evenIfEmpty bool) bool {
	if len(d.updated) == 0 && len(d.removed) == 0 && !evenIfEmpty {
		return false
	}
	slices.SortFunc(d.updated, func(a, b *discovery.Resource) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(d.removed)
	w.known[syncKey] = c.syncMarker()
	// The channel has room: the server drains it before each new watch, and
	// a stream has at most one watch per type.
	w.out <- &deltaResponse{
		req:   w.req,
		known: w.known,
		resp: &discovery.DeltaDiscoveryResponse{
			SystemVersionInfo: t.version,
			Resources:         d.updated,
			RemovedResources:  d.removed,
			TypeUrl:           t.typeURL,
		},
	}
	return true
}

// deltaDiff collects what a stream misses.
type deltaDiff struct {
	updated []*discovery.Resource
	removed []string
	// dedupe is set when a name may come up more than once.
	dedupe bool
	seen   map[string]struct{}
}

// name looks at one name. changed says the name changed since the stream's
// state, so that without a version in the map the client does not have it.
func (d *deltaDiff) name(t *typeState, w *deltaWatch, name string, changed bool) {
	if name == syncKey || name == wildcard {
		return
	}
	if d.dedupe {
		if d.seen == nil {
			d.seen = make(map[string]struct{})
		}
		if _, ok := d.seen[name]; ok {
			return
		}
		d.seen[name] = struct{}{}
	}
	have, inMap := w.known[name]
	delete(w.known, name)
	r, exists := t.visible(name, w.keyless)
	// A hidden entry changing is no news to the stream: it never had it.
	hidden := !exists && w.keyless && t.private[name]
	switch {
	case exists && subscribed(w.sub, name) && (!inMap || have != r.Version):
		d.updated = append(d.updated, r)
	case !exists && (inMap || changed && !hidden):
		d.removed = append(d.removed, name)
	}
}

// full compares the whole subscription with the versions in the map, for
// a stream's first watch.
func (d *deltaDiff) full(t *typeState, w *deltaWatch) {
	d.dedupe = true
	if w.sub.IsWildcard() {
		for name := range t.entries {
			d.name(t, w, name, false)
		}
	} else {
		for name := range w.sub.SubscribedResources() {
			d.name(t, w, name, false)
		}
	}
	for name := range w.known {
		d.name(t, w, name, false)
	}
}
func subscribed(sub gcache.Subscription, name string) bool {
	if sub.IsWildcard() {
		return true
	}
	_, ok := sub.SubscribedResources()[name]
	return ok
}
