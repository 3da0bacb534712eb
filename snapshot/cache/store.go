package cache

import (
	"sort"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// typeState is everything the cache holds for one role and type URL.
type typeState struct {
	typeURL string
	entries map[string]*discovery.Resource
	// private names the entries that hold a private key.
	private map[string]bool
	// version is the changeVersion of the last change; content is the
	// typeContentVersion of the entries, computed when first needed after
	// a change (a state-of-the-world response costs O(entries) anyway).
	version string
	content string

	// log holds the names changed after floor, oldest first, so that a
	// stream synced at a known sequence catches up in O(changes).
	log   []logEntry
	floor uint64

	// all is the state-of-the-world answer to a wildcard request, built on
	// first use after a change and shared by every such response; public
	// is the same without the entries that hold private keys.
	all, public []*anypb.Any
	names       []string

	delta map[*deltaWatch]struct{}
	sotw  map[*sotwWatch]struct{}

	applied [appliedRing]appliedAt
	next    int
}

type logEntry struct {
	seq  uint64
	name string
}

type appliedAt struct {
	version, content string
	at               time.Time
}

// appliedRing bounds how many recent type versions remember when they were
// applied; a client more than this many versions behind is not measured.
const appliedRing = 16

// minLog keeps the change log from being compacted so eagerly that streams a
// few batches behind have to fall back to a full comparison.
const minLog = 4096

func newTypeState(typeURL string) *typeState {
	return &typeState{
		typeURL: typeURL,
		entries: make(map[string]*discovery.Resource),
		private: make(map[string]bool),
		version: "0",
		delta:   make(map[*deltaWatch]struct{}),
		sotw:    make(map[*sotwWatch]struct{}),
	}
}

// set commits one prepared change at seq and reports whether it changed
// anything.
func (t *typeState) set(p prepared, seq uint64) bool {
	old, had := t.entries[p.name]
	switch {
	case p.res == nil && !had:
		return false
	case p.res != nil && had && old.Version == p.res.Version:
		return false
	}
	delete(t.private, p.name)
	if p.res == nil {
		delete(t.entries, p.name)
	} else {
		t.entries[p.name] = p.res
		if p.private {
			t.private[p.name] = true
		}
	}
	t.all, t.public, t.names, t.content = nil, nil, nil, ""
	t.log = append(t.log, logEntry{seq: seq, name: p.name})
	return true
}

// stamp names the version after a batch of changes to this type and
// remembers when it was applied.
func (t *typeState) stamp(version string, now time.Time) {
	t.version = version
	t.applied[t.next] = appliedAt{version: version, at: now}
	t.next = (t.next + 1) % appliedRing
}

// contentVersion is the typeContentVersion of the entries; the latest
// applied version learns it, so that a state-of-the-world ACK of it is
// measured too.
func (t *typeState) contentVersion() string {
	if t.content == "" {
		t.content = typeContentVersion(t.sortedNames(), func(n string) string { return t.entries[n].Version })
		last := &t.applied[(t.next+appliedRing-1)%appliedRing]
		if last.version == t.version {
			last.content = t.content
		}
	}
	return t.content
}

// sortedNames are the entries' names in order, kept until a change.
func (t *typeState) sortedNames() []string {
	if t.names == nil {
		t.names = make([]string, 0, len(t.entries))
		for n := range t.entries {
			t.names = append(t.names, n)
		}
		sort.Strings(t.names)
	}
	return t.names
}

// compact bounds the log to a multiple of the entries, amortized O(1) per
// change.
func (t *typeState) compact() {
	if limit := max(minLog, 2*len(t.entries)); len(t.log) > limit {
		drop := len(t.log) / 2
		t.floor = t.log[drop-1].seq
		t.log = append(t.log[:0:0], t.log[drop:]...)
	}
}

// changedSince returns the names changed after seq, possibly with
// repetitions, or ok false when the log no longer reaches back that far.
func (t *typeState) changedSince(seq uint64) (names []logEntry, ok bool) {
	if seq < t.floor {
		return nil, false
	}
	i := sort.Search(len(t.log), func(i int) bool { return t.log[i].seq > seq })
	return t.log[i:], true
}

// wildcardAnys returns every resource of the type, sorted by name;
// without those that hold private keys when keyless.
func (t *typeState) wildcardAnys(keyless bool) []*anypb.Any {
	if keyless && len(t.private) > 0 {
		if t.public == nil {
			t.public = t.sortedAnys(func(n string) bool { return !t.private[n] })
		}
		return t.public
	}
	if t.all == nil && len(t.entries) > 0 {
		t.all = t.sortedAnys(func(string) bool { return true })
	}
	return t.all
}

func (t *typeState) sortedAnys(keep func(name string) bool) []*anypb.Any {
	out := make([]*anypb.Any, 0, len(t.entries))
	for _, n := range t.sortedNames() {
		if keep(n) {
			out = append(out, t.entries[n].Resource)
		}
	}
	return out
}

// visible is the entry of name a stream may see, if any: an entry that
// holds a private key does not exist for a keyless stream.
func (t *typeState) visible(name string, keyless bool) (*discovery.Resource, bool) {
	r, ok := t.entries[name]
	if ok && keyless && t.private[name] {
		return nil, false
	}
	return r, ok
}

func (t *typeState) appliedAt(version string) (time.Time, bool) {
	for _, a := range t.applied {
		if (a.version == version || a.content == version) && !a.at.IsZero() {
			return a.at, true
		}
	}
	return time.Time{}, false
}
