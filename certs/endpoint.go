package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/retry"
)

// Profile is a SPIFFE bundle endpoint profile.
type Profile string

const (
	// ProfileHTTPSSPIFFE authenticates the endpoint by its SPIFFE ID,
	// against the bundle of the endpoint's trust domain.
	ProfileHTTPSSPIFFE Profile = "https_spiffe"
	// ProfileHTTPSWeb authenticates the endpoint with web PKI.
	ProfileHTTPSWeb Profile = "https_web"
)

const (
	defaultRefresh = 5 * time.Minute
	// defaultMinRetry is the first wait after a failed fetch: a peer that
	// is starting, or was down a moment, is fetched from again at once.
	defaultMinRetry     = time.Second
	defaultFetchTimeout = 30 * time.Second
	// minRefresh and maxRefresh bound what an endpoint's refresh hint can
	// make us do: poll every second at the most (the hint's resolution),
	// and at least hourly, so that a peer's new CA reaches this mesh
	// within the hour and a failed fetch is retried within it too,
	// whatever hint a peer sends.
	minRefresh = time.Second
	maxRefresh = time.Hour
)

// EndpointConfig is one federated trust domain's bundle endpoint.
type EndpointConfig struct {
	TrustDomain spiffeid.TrustDomain
	URL         string
	Profile     Profile
	// EndpointID is the SPIFFE ID the endpoint's server certificate must
	// carry (https_spiffe only). It is verified against the bundle set's
	// latest bundle for EndpointID's trust domain: the fetched trust
	// domain's own when the endpoint is self-serving, else another
	// configured trust domain's.
	EndpointID spiffeid.ID
	// BootstrapFile is the operator-supplied bundle (PEM certificates or
	// SPIFFE JSON) of a self-serving https_spiffe endpoint's trust domain,
	// read once. The federation spec has the first fetch authenticated
	// with it and every later one with the latest fetched bundle, so it is
	// in use only until the first successful fetch replaces it.
	BootstrapFile string
	// SavedFile, when set, keeps the latest fetched bundle across restarts
	// (the spec's "store the latest bundle"): on start it is used instead
	// of the bootstrap bundle, unless the bootstrap file is newer (the
	// operator replaced it), and every fetch that changes it rewrites it.
	SavedFile string
	// WebCAFile holds the PEM roots that verify an https_web endpoint,
	// read on each fetch; empty means the system roots.
	WebCAFile string
	// DefaultRefresh applies when the bundle has no refresh hint; zero
	// means 5 minutes.
	DefaultRefresh time.Duration
	// MinRetry is the first wait after a failed fetch; the waits double,
	// with jitter, up to the refresh interval. Zero means 1 s.
	MinRetry time.Duration
	// FetchTimeout bounds one fetch; zero means 30 seconds.
	FetchTimeout time.Duration
}

// selfServing reports whether the endpoint serves its own trust domain's
// bundle, which then authenticates it.
func (c EndpointConfig) selfServing() bool { return c.EndpointID.TrustDomain() == c.TrustDomain }

func (c EndpointConfig) validate() error {
	if c.TrustDomain.IsZero() {
		return fmt.Errorf("certs: bundle endpoint %s needs a trust domain", c.URL)
	}
	if err := checkEndpointURL(c.URL); err != nil {
		return fmt.Errorf("certs: bundle endpoint for trust domain %q: %w", c.TrustDomain.Name(), err)
	}
	switch c.Profile {
	case ProfileHTTPSSPIFFE:
		if c.EndpointID.IsZero() {
			return fmt.Errorf("certs: bundle endpoint %s uses profile https_spiffe and needs an endpoint SPIFFE ID", c.URL)
		}
		if c.WebCAFile != "" {
			return fmt.Errorf("certs: bundle endpoint %s uses profile https_spiffe; a web CA file is for https_web", c.URL)
		}
		if c.BootstrapFile != "" && !c.selfServing() {
			return fmt.Errorf("certs: bundle endpoint %s is not self-serving (its SPIFFE ID %q is in trust domain %q): it is authenticated with that trust domain's own bundle, not a bootstrap bundle",
				c.URL, c.EndpointID, c.EndpointID.TrustDomain().Name())
		}
	case ProfileHTTPSWeb:
		if !c.EndpointID.IsZero() || c.BootstrapFile != "" {
			return fmt.Errorf("certs: bundle endpoint %s uses profile https_web; an endpoint SPIFFE ID and a bootstrap bundle are for https_spiffe", c.URL)
		}
	default:
		return fmt.Errorf("certs: bundle endpoint %s has profile %q, want https_spiffe or https_web", c.URL, string(c.Profile))
	}
	return nil
}

// checkEndpointURL applies the spec's URL rules for both profiles.
func checkEndpointURL(raw string) error {
	if raw == "" {
		return errors.New("no URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "https":
		return fmt.Errorf("URL %q: the scheme must be https", raw)
	case u.User != nil:
		return fmt.Errorf("URL %q must not hold user information", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("URL %q has no host", raw)
	}
	return nil
}

// LoadBundleFile reads td's bundle from a file of PEM certificates or in
// the SPIFFE bundle format (JSON, as `spire-server bundle show -format
// spiffe` prints it), and checks it can be td's.
func LoadBundleFile(td spiffeid.TrustDomain, path string) (*spiffebundle.Bundle, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	var b *spiffebundle.Bundle
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		b, err = spiffebundle.Parse(td, data)
	} else {
		var xb *x509bundle.Bundle
		if xb, err = x509bundle.Parse(td, data); err == nil {
			b = spiffebundle.FromX509Bundle(xb)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("certs: bundle file %s for trust domain %q: %w", path, td.Name(), err)
	}
	if err := checkBundle(td, "file "+path, b.X509Authorities()); err != nil {
		return nil, err
	}
	return b, nil
}

// FetchBundle fetches cfg's bundle once. auth supplies the bundle that
// authenticates an https_spiffe endpoint and is read on each handshake, so
// it may be the very BundleSet the result goes into.
func FetchBundle(ctx context.Context, cfg EndpointConfig, auth x509bundle.Source) (*spiffebundle.Bundle, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b, _, err := fetch(ctx, cfg, auth)
	return b, err
}

// AddEndpoint keeps cfg.TrustDomain's bundle current from a bundle endpoint.
// The saved or bootstrap bundle, when there is one, is in use at once; the
// first fetch starts at once in the background, later ones follow the
// bundle's refresh hint (or cfg.DefaultRefresh). A failed fetch or a
// rejected bundle is logged and counted, and the bundle in use stays.
func (s *BundleSet) AddEndpoint(cfg EndpointConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.WebCAFile != "" {
		if _, err := loadRoots(cfg.WebCAFile); err != nil {
			return err
		}
	}
	first, origin, err := initialBundle(cfg)
	if err != nil {
		return err
	}
	st, err := s.claim(cfg.TrustDomain, "endpoint "+cfg.URL, true)
	if err != nil {
		return err
	}
	if first != nil {
		s.store(first, origin, st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWith(cfg.TrustDomain, st, func() error { cancel(); return nil })
	go s.pollEndpoint(ctx, cfg, st)
	return nil
}

// initialBundle picks what is in use before the first fetch: the bundle
// saved by the last run (the latest the endpoint served, which the spec
// says authenticates the next connection), unless the operator has put a
// newer bootstrap bundle in place since; nil when there is neither.
func initialBundle(cfg EndpointConfig) (*spiffebundle.Bundle, string, error) {
	var boot *spiffebundle.Bundle
	var bootTime time.Time
	if cfg.BootstrapFile != "" {
		fi, err := os.Stat(cfg.BootstrapFile)
		if err != nil {
			return nil, "", fmt.Errorf("certs: bootstrap bundle: %w", err)
		}
		if boot, err = LoadBundleFile(cfg.TrustDomain, cfg.BootstrapFile); err != nil {
			return nil, "", err
		}
		bootTime = fi.ModTime()
	}
	if cfg.SavedFile != "" {
		if fi, err := os.Stat(cfg.SavedFile); err == nil && (boot == nil || !fi.ModTime().Before(bootTime)) {
			// A saved bundle that cannot be read is only a lost cache;
			// the bootstrap bundle or the first fetch takes over.
			if saved, err := LoadBundleFile(cfg.TrustDomain, cfg.SavedFile); err == nil {
				return saved, OriginSaved, nil
			}
		}
	}
	if boot != nil {
		return boot, OriginBootstrap, nil
	}
	return nil, "", nil
}

func loadRoots(path string) (*x509.CertPool, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: web CA file: %w", err)
	}
	certs, err := parsePEMCerts(data)
	if err != nil {
		return nil, fmt.Errorf("certs: web CA file %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// pollEndpoint fetches until the set is closed: at the interval the
// bundle's refresh hint asks for (within [minRefresh, maxRefresh]), and
// after a failure with a backoff from cfg.MinRetry up to that interval
// (the spec's "retry at the next polling interval" at the latest): an
// endpoint that was down is fetched from again soon after it is back.
// Removing the trust domain ends ctx.
func (s *BundleSet) pollEndpoint(ctx context.Context, cfg EndpointConfig, st *sourceState) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	// The bundle in use (saved or bootstrap) brings the hint its
	// endpoint gave last.
	interval := s.refreshOf(cfg, nil)
	b := retry.New(cmpOr(cfg.MinRetry, defaultMinRetry), interval)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		bundle, fi, err := fetch(ctx, cfg, s)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			b.SetCap(interval)
			timer.Reset(s.fetchFailed(cfg, st, fi, err, b.Next()))
			continue
		}
		b.Reset()
		interval = s.refreshOf(cfg, bundle)
		s.fetched(cfg, st, bundle, interval)
		timer.Reset(interval)
	}
}

// refreshOf is the polling interval of cfg's endpoint after it served
// b (nil: the bundle in use, if any): its refresh hint, within bounds,
// or the configured default.
func (s *BundleSet) refreshOf(cfg EndpointConfig, b *spiffebundle.Bundle) time.Duration {
	if b == nil {
		b, _ = s.GetBundleForTrustDomain(cfg.TrustDomain)
	}
	if b != nil {
		if hint, ok := b.RefreshHint(); ok && hint > 0 {
			return min(max(hint, minRefresh), maxRefresh)
		}
	}
	return cmpOr(cfg.DefaultRefresh, defaultRefresh)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (s *BundleSet) fetchFailed(cfg EndpointConfig, st *sourceState, fi fetchInfo, err error, next time.Duration) time.Duration {
	if !s.still(cfg.TrustDomain, st) {
		return next // removed meanwhile: its poller is ending
	}
	td := cfg.TrustDomain.Name()
	s.metrics.fetch(td, ResultFailure)
	if fi.handshake != nil {
		logRefused(s.log, s.metrics, SideClient, fi.remote, fi.handshake, zap.String("trust_domain", td), zap.String("url", cfg.URL))
	}
	s.failed(cfg.TrustDomain, st, err, zap.String("url", cfg.URL), zap.Duration("retry_in", next))
	s.scheduled(cfg.TrustDomain, st, next, true)
	return next
}

// fetched saves a changed bundle, then takes it into use: whoever sees the
// new bundle in use finds it saved too.
func (s *BundleSet) fetched(cfg EndpointConfig, st *sourceState, b *spiffebundle.Bundle, next time.Duration) {
	if !s.still(cfg.TrustDomain, st) {
		return // removed meanwhile: neither saved nor used
	}
	td := cfg.TrustDomain.Name()
	s.metrics.fetch(td, ResultSuccess)
	if prev, _ := s.GetBundleForTrustDomain(cfg.TrustDomain); cfg.SavedFile != "" && (prev == nil || !prev.Equal(b)) {
		if err := saveBundle(cfg.SavedFile, b); err != nil {
			// Only the next start loses: it begins from the bootstrap bundle.
			s.log.Warn("could not save the fetched trust bundle", zap.String("trust_domain", td), zap.String("path", cfg.SavedFile), zap.Error(err))
		}
	}
	s.store(b, OriginEndpoint, st)
	s.scheduled(cfg.TrustDomain, st, next, false)
	s.log.Debug("bundle fetched", zap.String("trust_domain", td), zap.Duration("next_refresh", next))
}

func saveBundle(path string, b *spiffebundle.Bundle) error {
	data, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("certs: encode bundle: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return writeFileAtomic(path, data, certMode)
}
