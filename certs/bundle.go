package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

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

	mu      sync.RWMutex
	bundles map[spiffeid.TrustDomain]bundleEntry
	sources map[spiffeid.TrustDomain]string // what keeps each trust domain current
	closers []func() error
	closed  bool
	wg      sync.WaitGroup
	stop    chan struct{}
}

type bundleEntry struct {
	spiffe *spiffebundle.Bundle
	x509   *x509bundle.Bundle // derived once, not per handshake
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
		sources: map[spiffeid.TrustDomain]string{},
		stop:    make(chan struct{}),
	}
}

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

// Set stores a bundle directly: the agent's own bundle from memory, or the
// bootstrap bundle that authenticates an https_spiffe endpoint before its
// first fetch. A later fetch from that endpoint replaces it.
func (s *BundleSet) Set(b *spiffebundle.Bundle) error {
	if err := checkBundle(b.TrustDomain(), "memory", b.X509Authorities()); err != nil {
		return err
	}
	s.store(b)
	return nil
}

// claim records that src keeps td current, so two sources never fight over
// one trust domain. A poller is counted in wg under the same lock that
// Close takes, so Close never misses one.
func (s *BundleSet) claim(td spiffeid.TrustDomain, src string, poller bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("certs: bundle set is closed")
	}
	if prev, ok := s.sources[td]; ok {
		return fmt.Errorf("certs: trust domain %q already has a bundle source (%s)", td.Name(), prev)
	}
	s.sources[td] = src
	if poller {
		s.wg.Add(1)
	}
	return nil
}

func (s *BundleSet) unclaim(td spiffeid.TrustDomain) {
	s.mu.Lock()
	delete(s.sources, td)
	s.mu.Unlock()
}

// store takes b into use and announces it when its X.509 authorities
// changed; a new refresh hint alone is stored silently.
func (s *BundleSet) store(b *spiffebundle.Bundle) {
	td := b.TrustDomain()
	next := bundleEntry{spiffe: b, x509: b.X509Bundle()}
	s.mu.Lock()
	prev, had := s.bundles[td]
	s.bundles[td] = next
	s.mu.Unlock()
	if had && prev.x509.Equal(next.x509) {
		return
	}
	log := s.log.With(zap.String("trust_domain", td.Name()), zap.Int("authorities", len(next.x509.X509Authorities())))
	if had {
		s.metrics.rotated(KindBundle, td.Name())
		log.Info("trust bundle rotated")
	} else {
		log.Info("trust bundle loaded")
	}
	s.notify()
}

func (s *BundleSet) failed(td spiffeid.TrustDomain, err error) {
	s.metrics.loadFailed(KindBundle, td.Name())
	s.log.Error("trust bundle load failed; keeping the last good bundle",
		zap.String("trust_domain", td.Name()), zap.Error(err))
}

// AddFile keeps td's bundle current from a PEM file of CA certificates. The
// first load must succeed; a later bad file is logged and counted, and the
// last good bundle stays in use.
func (s *BundleSet) AddFile(td spiffeid.TrustDomain, path string) error {
	if td.IsZero() {
		return fmt.Errorf("certs: bundle file %s needs a trust domain", path)
	}
	if err := s.claim(td, "file "+path, false); err != nil {
		return err
	}
	load := func() error {
		b, err := x509bundle.Load(td, path)
		if err != nil {
			return fmt.Errorf("certs: load bundle for trust domain %q: %w", td.Name(), err)
		}
		if err := checkBundle(td, "file "+path, b.X509Authorities()); err != nil {
			return err
		}
		s.store(spiffebundle.FromX509Bundle(b))
		return nil
	}
	if err := load(); err != nil {
		s.unclaim(td)
		return err
	}
	w, err := watchFiles([]string{path}, s.log, func() {
		if err := load(); err != nil {
			s.failed(td, err)
		}
	})
	if err != nil {
		s.unclaim(td)
		return fmt.Errorf("certs: watch bundle file %s: %w", path, err)
	}
	s.addCloser(w.Close)
	return nil
}

func (s *BundleSet) addCloser(c func() error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c() // Close ran meanwhile; nobody else will stop this watcher
		return
	}
	s.closers = append(s.closers, c)
	s.mu.Unlock()
}

// Close stops every watcher and endpoint poller. The bundles stay readable.
func (s *BundleSet) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	closers := s.closers
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	var first error
	for _, c := range closers {
		if err := c(); err != nil && first == nil {
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
