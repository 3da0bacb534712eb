package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/model"
)

// Cache holds the resources of every role and answers the xDS server's
// watches. It implements go-control-plane's cache.Cache.
//
// No watch of a role is answered before the first Apply to that role, so a
// gateway reconnecting to a restarted agent waits for the restored state
// rather than receiving an empty one.
type Cache struct {
	nodeRole NodeRole
	log      *zap.Logger
	now      func() time.Time

	// epoch tells this process's sync markers from another's.
	epoch string

	mu    sync.Mutex
	roles map[model.Role]*roleState
	seq   uint64 // of the last change, across all roles and types
	// marker is syncMarker(markerSeq), shared by all responses at that seq.
	marker    string
	markerSeq uint64

	warnMu sync.Mutex
	warned map[string]struct{}

	marshals atomic.Uint64
}

type roleState struct {
	ready bool
	types map[string]*typeState
	eds   edsLinks
}

// maxWarned bounds the memory spent remembering which unknown nodes were
// already logged; past it, they are no longer logged.
const maxWarned = 1024

var _ gcache.Cache = (*Cache)(nil)

// ErrFetchNotSupported is returned by Fetch: meshfed serves gateways over
// streams only.
var ErrFetchNotSupported = errors.New("xDS fetch (REST) is not supported")

// unknownType refuses a request for a type the cache does not serve; the
// server ends the stream with it.
func unknownType(typeURL string) error {
	name := typeURL
	if len(name) > 200 {
		name = name[:200] + "..."
	}
	return status.Errorf(codes.InvalidArgument, "type URL %q is not served here", name)
}

// New returns an empty cache that serves nodes by the role nodeRole gives
// them. A nil logger discards logs.
func New(nodeRole NodeRole, log *zap.Logger) *Cache {
	if log == nil {
		log = zap.NewNop()
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return &Cache{
		nodeRole: nodeRole,
		log:      log,
		now:      time.Now,
		epoch:    hex.EncodeToString(b[:]) + ":",
		roles:    make(map[model.Role]*roleState),
		warned:   make(map[string]struct{}),
	}
}

// Apply sets and deletes resources of a role. Resources whose bytes did not
// change are skipped. Changes are delivered make-before-break: additions and
// updates of secrets, clusters and endpoints first, then listeners and
// routes, then removals of secrets, clusters and endpoints.
//
// A change that cannot be served (invalid name, wrong type, failed marshal)
// is rejected and reported in the error; the rest of the batch is applied, and
// the rejected resource keeps its last good version.
//
// The first Apply of a role makes it ready: watches of its gateways are
// answered from then on.
func (c *Cache) Apply(role model.Role, changes []Change) error {
	batch, err := c.prepare(changes)

	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.role(role)
	batch = append(batch, rs.eds.link(batch, rs.types[resource.EndpointType])...)
	now := c.now()
	for _, phase := range phases(batch) {
		for len(phase) > 0 {
			n := 1
			for n < len(phase) && phase[n].typeURL == phase[0].typeURL {
				n++
			}
			c.commit(rs, rs.typ(phase[0].typeURL), phase[:n], now)
			phase = phase[n:]
		}
	}
	if !rs.ready {
		rs.ready = true
		c.answerAll(rs)
	}
	return err
}

// Replace makes resources the whole state of the role: anything of the role
// not among them is deleted. It costs O(catalog); use it for the first state
// and resyncs, Apply for changes.
func (c *Cache) Replace(role model.Role, resources []Change) error {
	keep := make(map[resourceKey]struct{}, len(resources))
	for _, r := range resources {
		keep[resourceKey{r.TypeURL, r.Name}] = struct{}{}
	}
	var deletes []Change
	c.mu.Lock()
	if rs, ok := c.roles[role]; ok {
		for typeURL, t := range rs.types {
			for name := range t.entries {
				if _, ok := keep[resourceKey{typeURL, name}]; !ok {
					deletes = append(deletes, Change{TypeURL: typeURL, Name: name})
				}
			}
		}
	}
	c.mu.Unlock()
	// A concurrent Apply between the two locks is overridden only where it
	// touched the same names, the same as if it had come first.
	return c.Apply(role, append(slices.Clip(resources), deletes...))
}

// commit applies changes of one type and notifies its watches.
func (c *Cache) commit(rs *roleState, t *typeState, batch []prepared, now time.Time) {
	start := len(t.log)
	for _, p := range batch {
		if t.set(p, c.seq+1) {
			c.seq++
		}
	}
	if len(t.log) == start {
		return
	}
	t.stamp(changeVersion(c.epoch, c.seq), now)
	if rs.ready {
		c.notify(t, t.log[start:])
	}
	t.compact()
}

func (c *Cache) notify(t *typeState, changed []logEntry) {
	for w := range t.delta {
		if c.answerDelta(t, w, changed) {
			delete(t.delta, w)
		}
	}
	for w := range t.sotw {
		if c.answerSotw(t, w, changed) {
			delete(t.sotw, w)
		}
	}
}

// answerAll answers the watches that waited for the role to become ready, in
// make-before-break order.
func (c *Cache) answerAll(rs *roleState) {
	types := make([]*typeState, 0, len(rs.types))
	for _, t := range rs.types {
		types = append(types, t)
	}
	slices.SortFunc(types, func(a, b *typeState) int { return rank(a.typeURL) - rank(b.typeURL) })
	for _, t := range types {
		for w := range t.delta {
			// Falling behind the log needs a marker of this process, which
			// no stream can have before the role is ready.
			if answered, _ := c.catchUpDelta(t, w); answered {
				delete(t.delta, w)
			}
		}
		for w := range t.sotw {
			if c.answerSotw(t, w, nil) {
				delete(t.sotw, w)
			}
		}
	}
}

func (c *Cache) role(r model.Role) *roleState {
	rs, ok := c.roles[r]
	if !ok {
		rs = &roleState{types: make(map[string]*typeState), eds: newEDSLinks()}
		c.roles[r] = rs
	}
	return rs
}

func (rs *roleState) typ(typeURL string) *typeState {
	t, ok := rs.types[typeURL]
	if !ok {
		t = newTypeState(typeURL)
		rs.types[typeURL] = t
	}
	return t
}

// roleOf maps a node to its role, logging each unknown node once.
func (c *Cache) roleOf(nodeID string) (model.Role, bool) {
	if role, ok := c.nodeRole(nodeID); ok {
		return role, true
	}
	// A node id is the client's to choose, megabytes long if it likes:
	// only its start is remembered and logged.
	shown := nodeID
	if len(shown) > maxShownNodeID {
		shown = strings.ToValidUTF8(shown[:maxShownNodeID], "") + "… [cut from " + strconv.Itoa(len(nodeID)) + " bytes]"
	}
	c.warnMu.Lock()
	_, seen := c.warned[shown]
	if !seen && len(c.warned) < maxWarned {
		c.warned[shown] = struct{}{}
	}
	c.warnMu.Unlock()
	if !seen {
		c.log.Warn("xDS client is not a known gateway; it gets no resources", zap.String("node_id", shown))
	}
	return "", false
}

// maxShownNodeID bounds what an unknown node id takes in the log and in
// memory.
const maxShownNodeID = 256

// syncMarker is the value under syncKey in a stream's version map: the
// sequence number up to which the map reflects the cache.
func (c *Cache) syncMarker() string {
	if c.markerSeq != c.seq || c.marker == "" {
		c.marker = c.epoch + strconv.FormatUint(c.seq, 10)
		c.markerSeq = c.seq
	}
	return c.marker
}

func (c *Cache) syncedAt(known map[string]string) (uint64, bool) {
	v, ok := known[syncKey]
	if !ok || len(v) <= len(c.epoch) || v[:len(c.epoch)] != c.epoch {
		return 0, false
	}
	seq, err := strconv.ParseUint(v[len(c.epoch):], 10, 64)
	return seq, err == nil && seq <= c.seq
}

// Fetch is not supported; see ErrFetchNotSupported.
func (c *Cache) Fetch(context.Context, *gcache.Request) (gcache.Response, error) {
	return nil, ErrFetchNotSupported
}

// Ready reports whether the role had its first Apply.
func (c *Cache) Ready(role model.Role) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs, ok := c.roles[role]
	return ok && rs.ready
}

// Version returns the content version of a role's resources of a type, the
// version_info state-of-the-world clients ACK. It costs O(resources) after
// a change.
func (c *Cache) Version(role model.Role, typeURL string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.role(role).typ(typeURL).contentVersion()
}

// DeltaVersion returns the system_version_info of the latest delta
// response of a role's resources of a type, the version delta clients ACK.
func (c *Cache) DeltaVersion(role model.Role, typeURL string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.role(role).typ(typeURL).version
}

// Len returns the number of a role's resources of a type.
func (c *Cache) Len(role model.Role, typeURL string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rs, ok := c.roles[role]; ok {
		if t, ok := rs.types[typeURL]; ok {
			return len(t.entries)
		}
	}
	return 0
}

// AppliedAt returns when the given version of a role's type was applied, for
// recent versions; the xDS server measures push latency with it.
func (c *Cache) AppliedAt(role model.Role, typeURL, version string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rs, ok := c.roles[role]; ok {
		if t, ok := rs.types[typeURL]; ok {
			return t.appliedAt(version)
		}
	}
	return time.Time{}, false
}

// Resources returns a role's resources of a type, sorted by name, as they
// are served. They are shared: callers must not modify them.
func (c *Cache) Resources(role model.Role, typeURL string) []*discovery.Resource {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs, ok := c.roles[role]
	if !ok {
		return nil
	}
	t, ok := rs.types[typeURL]
	if !ok {
		return nil
	}
	out := make([]*discovery.Resource, 0, len(t.entries))
	for _, r := range t.entries {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *discovery.Resource) int { return strings.Compare(a.Name, b.Name) })
	return out
}
