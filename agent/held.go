package agent

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/store"
)

// servedBundlesBucket is the store bucket of the trust bundle (PEM) the
// gateways were last served for each trust domain. A peer's bundle that
// has not loaded by the end of the bundle wait (its endpoint down, no
// bundle saved) is taken from here for the gateways alone, so that the
// imports and exports that depend on it stay as the gateways last had
// them instead of being withdrawn. The agent never verifies a peer with
// it: its Hamlet stream waits for the bundle itself.
const servedBundlesBucket = "served-bundles"

// heldBundles are the bundles the gateways were last served, as stored,
// and the trust domains the gateways are served them for now.
type heldBundles struct {
	log *zap.Logger
	st  store.Bucket

	mu sync.Mutex
	// served is what the store holds, by trust domain.
	served map[string]string
	// held are the trust domains whose stored bundle the gateways are
	// served, since when.
	held map[string]time.Time
}

// loadHeldBundles reads what the store holds.
func loadHeldBundles(st *store.Store, log *zap.Logger) (*heldBundles, error) {
	h := &heldBundles{log: log, st: st.Bucket(servedBundlesBucket), served: map[string]string{}, held: map[string]time.Time{}}
	err := h.st.ForEach(func(td string, pem []byte) error {
		h.served[td] = string(pem)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: the bundles the gateways were served: %w", err)
	}
	return h, nil
}

// hold serves the gateways the stored bundle of each trust domain in tds,
// and returns those without one.
func (h *heldBundles) hold(tds []string) (none []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, td := range tds {
		if _, ok := h.served[td]; !ok {
			none = append(none, td)
			continue
		}
		if _, ok := h.held[td]; !ok {
			h.held[td] = time.Now()
		}
	}
	return none
}

// since is when the gateways began to be served td's stored bundle, and
// whether they are.
func (h *heldBundles) since(td string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.held[td]
	return t, ok
}

// apply completes bundles (what the gateways are to be served now) with
// the held ones that have not loaded, releases those that have, and
// stores any bundle that changed.
func (h *heldBundles) apply(bundles map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, td := range slices.Sorted(maps.Keys(h.held)) {
		if _, loaded := bundles[td]; loaded {
			delete(h.held, td)
			h.log.Info("a held trust bundle loaded; the gateways are served it, and the imports and exports that depend on it follow it again", zap.String("trust_domain", td))
			continue
		}
		bundles[td] = h.served[td]
	}
	puts := map[string][]byte{}
	for td, pem := range bundles {
		if h.served[td] != pem {
			puts[td] = []byte(pem)
		}
	}
	if len(puts) == 0 {
		return
	}
	// A failed write loses only the next restart's fallback.
	if err := h.st.Apply(puts, nil); err != nil {
		h.log.Warn("could not store the trust bundles the gateways are served", zap.Error(err))
		return
	}
	for td, pem := range puts {
		h.served[td] = string(pem)
	}
}

// BundleHold is a peer trust domain whose bundle has not loaded by the
// end of the bundle wait, and what depends on it.
type BundleHold struct {
	TrustDomain string `json:"trustDomain"`
	// Peers are the configured peers of the trust domain.
	Peers []string `json:"peers"`
	// Imports ("peer/resource id") and Exports (names) are those that
	// depend on the bundle.
	Imports []string `json:"imports"`
	Exports []string `json:"exports"`
	// Held says that the gateways are served the bundle they last had
	// (since Since), so these stay as they were until the bundle loads or
	// the peer is removed; without a bundle ever served, they are not
	// served at all until it loads.
	Held   bool      `json:"held"`
	Since  time.Time `json:"since,omitzero"`
	Reason string    `json:"reason"`
}

// bundleHolds lists, by trust domain, the bundles that had not loaded by
// the end of the bundle wait and still have not; none before it ends.
func (a *Agent) bundleHolds() []BundleHold {
	select {
	case <-a.configured:
	default:
		return nil
	}
	states := map[string]certs.BundleState{}
	for _, s := range a.creds.bundles.States() {
		states[s.TrustDomain] = s
	}
	var out []BundleHold
	for _, td := range a.creds.bundles.Missing() {
		h := BundleHold{TrustDomain: td.Name(), Peers: []string{}, Imports: []string{}, Exports: []string{}}
		for _, p := range a.currentPeers() {
			if p.TrustDomain != td.Name() {
				continue
			}
			h.Peers = append(h.Peers, p.Name)
			for _, imp := range a.Catalog.Imports() {
				if imp.Peer == p.Name {
					h.Imports = append(h.Imports, imp.Peer+"/"+imp.ResourceID)
				}
			}
			h.Exports = append(h.Exports, a.Catalog.ExportedTo(p.Name)...)
		}
		slices.Sort(h.Exports)
		h.Exports = slices.Compact(h.Exports)
		st := states[td.Name()]
		why := fmt.Sprintf("the trust bundle of %s has not loaded from %s", td.Name(), st.Source)
		if st.LastError != "" {
			why += ": " + st.LastError
		}
		if !st.NextFetch.IsZero() {
			why += fmt.Sprintf("; next fetch at %s", st.NextFetch.UTC().Format(time.RFC3339))
		}
		h.Since, h.Held = a.held.since(td.Name())
		if h.Held {
			why += "; the gateways keep the bundle they were last served, and the imports and exports that depend on it stay as they were until it loads or the peer is removed"
		} else {
			why += "; no bundle of it was ever served to the gateways, so what depends on it is not served until it loads"
		}
		h.Reason = why
		out = append(out, h)
	}
	return out
}

// currentPeers are the peers as last reloaded.
func (a *Agent) currentPeers() []config.Peer {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return a.current.Peers
}

// holdProblems words the holds for the readiness and the status.
func holdProblems(holds []BundleHold) []string {
	var out []string
	for _, h := range holds {
		what := "peers " + strings.Join(h.Peers, ", ")
		if len(h.Imports) > 0 {
			what += fmt.Sprintf(" (%d imports held: %s)", len(h.Imports), strings.Join(h.Imports, ", "))
		}
		out = append(out, fmt.Sprintf("trust bundle %s: %s: %s", h.TrustDomain, what, h.Reason))
	}
	return out
}
