package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
)

// BundleSet holds one trust bundle per trust domain and keeps each current
// from its own source (a PEM file or a bundle endpoint). Bundles are never
// merged: GetX509BundleForTrustDomain returns only the named trust domain's
// authorities, so a peer is verified against its own trust domain alone and
// one federated domain's CA can never vouch for another domain's IDs.
//
// BundleSet implements x509bundle.Source (for peer verification) and
// spiffebundle.Source (for serving a bundle endpoint).
type BundleSet struct {
	log     *zap.Logger
	metrics *Metrics
	notifier
	// settle is SetSettleTime's.
	settle atomic.Int64

	mu      sync.RWMutex
	bundles map[spiffeid.TrustDomain]bundleEntry
	sources map[spiffeid.TrustDomain]*sourceState // what keeps each trust domain current
	closed  bool
	wg      sync.WaitGroup
	stop    chan struct{}
}

type bundleEntry struct {
	spiffe *spiffebundle.Bundle
	x509   *x509bundle.Bundle // derived once, not per handshake
	origin string
}

// Where the bundle in use came from (BundleState.Origin).
const (
	OriginFile      = "file"      // a bundle file
	OriginMemory    = "memory"    // BundleSet.Set
	OriginBootstrap = "bootstrap" // an endpoint's bootstrap bundle, before its first fetch
	OriginSaved     = "saved"     // the bundle an endpoint served in an earlier run, before this run's first fetch
	OriginEndpoint  = "endpoint"  // fetched from the endpoint in this run
)

// sourceState is what one trust domain's configured source has achieved.
type sourceState struct {
	desc        string // "file PATH" or "endpoint URL"
	lastFetch   time.Time
	lastErr     string
	lastErrTime time.Time
	// nextFetch is when an endpoint is fetched from next; failures counts
	// the fetches that failed since the last that did not.
	nextFetch time.Time
	failures  int
	// stop ends what keeps the bundle current: a file's watcher, an
	// endpoint's poller.
	stop func() error
}

// NewBundleSet returns an empty set. Close it to stop its watchers.
func NewBundleSet(log *zap.Logger, m *Metrics) *BundleSet {
	if log == nil {
		log = zap.NewNop()
	}
	return &BundleSet{
		log:     log,
		metrics: m,
		bundles: map[spiffeid.TrustDomain]bundleEntry{},
		sources: map[spiffeid.TrustDomain]*sourceState{},
		stop:    make(chan struct{}),
	}
}

// SetSettleTime is how long a bundle file added after it may stay
// unusable after a change before that is an error (FileSVIDConfig.Settle);
// zero, the default, makes it one at once.
func (s *BundleSet) SetSettleTime(d time.Duration) { s.settle.Store(int64(d)) }

func (s *BundleSet) settleTime() time.Duration { return time.Duration(s.settle.Load()) }

func errNoBundle(td spiffeid.TrustDomain) error {
	return fmt.Errorf("certs: no trust bundle for trust domain %q", td.Name())
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *BundleSet) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.RLock()
	e, ok := s.bundles[td]
	s.mu.RUnlock()
	if !ok {
		return nil, errNoBundle(td)
	}
	return e.x509, nil
}

// GetBundleForTrustDomain implements spiffebundle.Source.
func (s *BundleSet) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	s.mu.RLock()
	e, ok := s.bundles[td]
	s.mu.RUnlock()
	if !ok {
		return nil, errNoBundle(td)
	}
	return e.spiffe, nil
}

// TrustDomains lists the trust domains that currently have a bundle, sorted.
func (s *BundleSet) TrustDomains() []spiffeid.TrustDomain {
	s.mu.RLock()
	out := make([]spiffeid.TrustDomain, 0, len(s.bundles))
	for td := range s.bundles {
		out = append(out, td)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// Material returns a trust domain's current authorities as PEM for SDS.
func (s *BundleSet) Material(td spiffeid.TrustDomain) (BundleMaterial, error) {
	b, err := s.GetX509BundleForTrustDomain(td)
	if err != nil {
		return BundleMaterial{}, err
	}
	return bundleMaterial(b), nil
}

// Set stores a bundle directly, e.g. the agent's own bundle from memory.
// (An endpoint's bootstrap bundle is EndpointConfig.BootstrapFile, so that
// the set knows it is only a bootstrap.)
func (s *BundleSet) Set(b *spiffebundle.Bundle) error {
	if err := checkBundle(b.TrustDomain(), "memory", b.X509Authorities()); err != nil {
		return err
	}
	s.store(b, OriginMemory, nil)
	return nil
}

// claim records that src keeps td current, so two sources never fight over
// one trust domain. A poller is counted in wg under the same lock that
// Close takes, so Close never misses one.
func (s *BundleSet) claim(td spiffeid.TrustDomain, src string, poller bool) (*sourceState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("certs: bundle set is closed")
	}
	if prev, ok := s.sources[td]; ok {
		return nil, fmt.Errorf("certs: trust domain %q already has a bundle source (%s)", td.Name(), prev.desc)
	}
	st := &sourceState{desc: src}
	s.sources[td] = st
	if poller {
		s.wg.Add(1)
	}
	return st, nil
}

// current reports whether st still keeps td current: a source removed
// while it was loading or fetching must not bring its bundle back.
// Callers hold s.mu.
func (s *BundleSet) current(td spiffeid.TrustDomain, st *sourceState) bool {
	return st == nil || s.sources[td] == st
}

// still is current for callers that do not hold s.mu.
func (s *BundleSet) still(td spiffeid.TrustDomain, st *sourceState) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current(td, st)
}

// stopWith sets what ends st; when st was removed meanwhile (or the set
// closed), it ends at once.
func (s *BundleSet) stopWith(td spiffeid.TrustDomain, st *sourceState, stop func() error) {
	s.mu.Lock()
	if s.closed || !s.current(td, st) {
		s.mu.Unlock()
		_ = stop()
		return
	}
	st.stop = stop
	s.mu.Unlock()
}

// Remove stops td's source and drops its bundle: peers of td are no
// longer verified, and subscribers hear of it (the gateways' validation
// contexts lose the trust domain). It reports whether td had a source or a
// bundle.
func (s *BundleSet) Remove(td spiffeid.TrustDomain) bool {
	s.mu.Lock()
	st, hadSource := s.sources[td]
	_, hadBundle := s.bundles[td]
	var stop func() error
	if hadSource {
		stop, st.stop = st.stop, nil
	}
	delete(s.sources, td)
	delete(s.bundles, td)
	s.mu.Unlock()
	if stop != nil {
		if err := stop(); err != nil {
			s.log.Warn("could not stop the trust bundle's source", zap.String("trust_domain", td.Name()), zap.String("source", st.desc), zap.Error(err))
		}
	}
	if !hadSource && !hadBundle {
		return false
	}
	s.log.Info("trust bundle removed", zap.String("trust_domain", td.Name()))
	if hadBundle {
		s.notify()
	}
	return true
}

// scheduled notes when td's endpoint is fetched from next, after a fetch
// that failed or not.
func (s *BundleSet) scheduled(td spiffeid.TrustDomain, st *sourceState, in time.Duration, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.current(td, st) {
		return
	}
	st.nextFetch = time.Now().Add(in)
	if failed {
		st.failures++
	} else {
		st.failures = 0
	}
}

func (s *BundleSet) unclaim(td spiffeid.TrustDomain, st *sourceState) {
	s.mu.Lock()
	if s.sources[td] == st {
		delete(s.sources, td)
	}
	s.mu.Unlock()
}

// store takes b into use and announces it when its X.509 authorities
// changed; a new refresh hint alone is stored silently. from is the
// source that loaded b (nil: Set); a source removed meanwhile stores
// nothing.
func (s *BundleSet) store(b *spiffebundle.Bundle, origin string, from *sourceState) {
	td := b.TrustDomain()
	next := bundleEntry{spiffe: b, x509: b.X509Bundle(), origin: origin}
	s.mu.Lock()
	if !s.current(td, from) {
		s.mu.Unlock()
		return
	}
	prev, had := s.bundles[td]
	s.bundles[td] = next
	if st := s.sources[td]; st != nil && (origin == OriginEndpoint || origin == OriginFile) {
		st.lastErr, st.lastErrTime = "", time.Time{} // a load from the source itself
		if origin == OriginEndpoint {
			st.lastFetch = time.Now()
		}
	}
	s.mu.Unlock()
	if had && prev.x509.Equal(next.x509) {
		if prev.origin != origin {
			s.log.Info("trust bundle confirmed", zap.String("trust_domain", td.Name()), zap.String("origin", origin), zap.String("was", prev.origin))
		}
		return
	}
	log := s.log.With(zap.String("trust_domain", td.Name()), zap.String("origin", origin), zap.Int("authorities", len(next.x509.X509Authorities())))
	if had {
		s.metrics.rotated(KindBundle, td.Name())
		log.Info("trust bundle rotated", zap.String("was", prev.origin))
	} else {
		log.Info("trust bundle loaded")
	}
	s.notify()
}

// failed records and logs a failed load or fetch. What it says depends on
// what is in use meanwhile: nothing at all is a different situation from a
// bootstrap bundle, and both from a last good bundle.
func (s *BundleSet) failed(td spiffeid.TrustDomain, from *sourceState, err error, fields ...zap.Field) {
	s.mu.Lock()
	if !s.current(td, from) {
		s.mu.Unlock()
		return
	}
	e, had := s.bundles[td]
	if from != nil {
		from.lastErr, from.lastErrTime = err.Error(), time.Now()
	}
	s.mu.Unlock()
	s.metrics.loadFailed(KindBundle, td.Name())
	fields = append(fields, zap.String("trust_domain", td.Name()), zap.Error(err))
	switch {
	case !had:
		s.log.Error("no usable trust bundle yet; peers of this trust domain cannot be verified until a fetch succeeds", fields...)
	case e.origin == OriginBootstrap:
		s.log.Warn("trust bundle fetch failed; the bootstrap bundle stays in use until a fetch succeeds", fields...)
	case e.origin == OriginSaved:
		s.log.Warn("trust bundle fetch failed; the bundle saved by the last run stays in use until a fetch succeeds", fields...)
	default:
		s.log.Warn("trust bundle update failed; keeping the last good bundle", fields...)
	}
}

// AddFile keeps td's bundle current from a PEM file of CA certificates. The
// first load must succeed; a later bad file is logged and counted, and the
// last good bundle stays in use.
func (s *BundleSet) AddFile(td spiffeid.TrustDomain, path string) error {
	if td.IsZero() {
		return fmt.Errorf("certs: bundle file %s needs a trust domain", path)
	}
	st, err := s.claim(td, "file "+path, false)
	if err != nil {
		return err
	}
	load := func() error {
		b, err := LoadX509Bundle(td, path)
		if err != nil {
			return fmt.Errorf("certs: load bundle for trust domain %q: %w", td.Name(), err)
		}
		if err := checkBundle(td, "file "+path, b.X509Authorities()); err != nil {
			return err
		}
		s.store(spiffebundle.FromX509Bundle(b), OriginFile, st)
		return nil
	}
	if err := load(); err != nil {
		s.unclaim(td, st)
		return err
	}
	// A file written in place is read cut short now and then: that is an
	// error only once it has lasted the settle time, and a file that stays
	// broken is reported once, not at every resync.
	settling := settler{settle: s.settleTime()}
	w, err := watchFiles([]string{path}, s.log, func(event bool) time.Duration {
		if event {
			settling.changed()
		}
		err := load()
		if err == nil {
			settling.ok()
			return 0
		}
		if wait := settling.fail(time.Now()); wait > 0 {
			s.log.Debug("bundle file not usable yet; waiting for it to be written whole", zap.String("trust_domain", td.Name()), zap.Error(err))
			return wait
		}
		if settling.report(err) {
			s.failed(td, st, err, zap.String("file", path))
		}
		return 0
	})
	if err != nil {
		s.unclaim(td, st)
		return fmt.Errorf("certs: watch bundle file %s: %w", path, err)
	}
	s.stopWith(td, st, w.Close)
	return nil
}

// Close stops every watcher and endpoint poller. The bundles stay readable.
func (s *BundleSet) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var stops []func() error
	for _, st := range s.sources {
		if st.stop != nil {
			stops = append(stops, st.stop)
			st.stop = nil // a later Remove has nothing left to stop
		}
	}
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	var first error
	for _, stop := range stops {
		if err := stop(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// checkBundle rejects a bundle that cannot be the named trust domain's: an
// empty one, or one whose CA certificates carry a SPIFFE ID of another trust
// domain (the SPIFFE bundle format itself does not name its trust domain, so
// the CA's URI SAN is the only evidence a misconfigured endpoint leaves).
func checkBundle(td spiffeid.TrustDomain, from string, authorities []*x509.Certificate) error {
	if len(authorities) == 0 {
		return fmt.Errorf("certs: bundle from %s for trust domain %q has no X.509 authorities", from, td.Name())
	}
	for _, c := range authorities {
		for _, u := range c.URIs {
			id, err := spiffeid.FromURI(u)
			if err != nil {
				continue
			}
			if id.TrustDomain() != td {
				return fmt.Errorf("certs: bundle from %s is for trust domain %q, want %q", from, id.TrustDomain().Name(), td.Name())
			}
		}
	}
	return nil
}

// BundleState is one trust domain's bundle and what its source achieved,
// for status pages and for the agent's wait for its peers' bundles.
type BundleState struct {
	TrustDomain string `json:"trustDomain"`
	// Source is what keeps the bundle current ("file PATH", "endpoint
	// URL"), empty for a bundle given by Set.
	Source string `json:"source,omitempty"`
	// Origin is where the bundle in use came from (Origin* constants);
	// empty while there is none.
	Origin string `json:"origin,omitempty"`
	// Authorities counts the X.509 authorities in use.
	Authorities int `json:"authorities"`
	// LastFetch is the last successful fetch from an endpoint in this run.
	LastFetch time.Time `json:"lastFetch,omitzero"`
	// NextFetch is when the endpoint is fetched from next: at its refresh
	// interval, or sooner after failed fetches (Failures of them in a
	// row), with a backoff from 1 s up to that interval.
	NextFetch time.Time `json:"nextFetch,omitzero"`
	Failures  int       `json:"failures,omitempty"`
	// LastError is the last failed load or fetch, kept until the next
	// success.
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
}

// States lists every trust domain with a source or a bundle, sorted.
func (s *BundleSet) States() []BundleState {
	s.mu.RLock()
	byName := map[string]BundleState{}
	for td, st := range s.sources {
		bs := BundleState{TrustDomain: td.Name(), Source: st.desc, LastFetch: st.lastFetch, NextFetch: st.nextFetch, Failures: st.failures}
		if st.lastErr != "" {
			bs.LastError, bs.LastErrorTime = st.lastErr, st.lastErrTime
		}
		byName[td.Name()] = bs
	}
	for td, e := range s.bundles {
		bs := byName[td.Name()]
		bs.TrustDomain, bs.Origin, bs.Authorities = td.Name(), e.origin, len(e.x509.X509Authorities())
		byName[td.Name()] = bs
	}
	s.mu.RUnlock()
	out := make([]BundleState, 0, len(byName))
	for _, bs := range byName {
		out = append(out, bs)
	}
	slices.SortFunc(out, func(a, b BundleState) int { return strings.Compare(a.TrustDomain, b.TrustDomain) })
	return out
}

// Missing lists, sorted, the trust domains whose configured source has not
// produced a bundle yet (an endpoint without a bootstrap or saved bundle,
// before its first successful fetch). Until a trust domain leaves this
// list its peers cannot be verified and its SDS validation context does
// not exist; Subscribe announces each bundle that arrives.
func (s *BundleSet) Missing() []spiffeid.TrustDomain {
	s.mu.RLock()
	var out []spiffeid.TrustDomain
	for td := range s.sources {
		if _, ok := s.bundles[td]; !ok {
			out = append(out, td)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}
