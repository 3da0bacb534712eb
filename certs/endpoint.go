package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
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
	defaultRefresh      = 5 * time.Minute
	defaultRetry        = 30 * time.Second
	defaultFetchTimeout = 30 * time.Second
)

// EndpointConfig is one federated trust domain's bundle endpoint.
type EndpointConfig struct {
	TrustDomain spiffeid.TrustDomain
	URL         string
	Profile     Profile
	// EndpointID is the SPIFFE ID the endpoint's server certificate must
	// carry (https_spiffe only). It is verified against the bundle set's
	// bundle for EndpointID's trust domain, which must be seeded with a
	// bootstrap bundle (BundleSet.Set) when that is the fetched domain.
	EndpointID spiffeid.ID
	// WebPKIRoots verify the endpoint (https_web only); nil means the
	// system roots.
	WebPKIRoots *x509.CertPool
	// DefaultRefresh applies when the bundle has no refresh hint; zero
	// means 5 minutes.
	DefaultRefresh time.Duration
	// RetryInterval is the wait after a failed fetch, capped at the refresh
	// interval; zero means 30 seconds.
	RetryInterval time.Duration
	// FetchTimeout bounds one fetch; zero means 30 seconds.
	FetchTimeout time.Duration
}

func (c EndpointConfig) validate() error {
	if c.TrustDomain.IsZero() {
		return fmt.Errorf("certs: bundle endpoint %s needs a trust domain", c.URL)
	}
	if c.URL == "" {
		return fmt.Errorf("certs: bundle endpoint for trust domain %q needs a URL", c.TrustDomain.Name())
	}
	switch c.Profile {
	case ProfileHTTPSSPIFFE:
		if c.EndpointID.IsZero() {
			return fmt.Errorf("certs: bundle endpoint %s uses profile https_spiffe and needs an endpoint SPIFFE ID", c.URL)
		}
	case ProfileHTTPSWeb:
	default:
		return fmt.Errorf("certs: bundle endpoint %s has profile %q, want https_spiffe or https_web", c.URL, string(c.Profile))
	}
	return nil
}

// FetchBundle fetches cfg's bundle once. auth supplies the bundle that
// authenticates an https_spiffe endpoint and is read on each handshake, so
// it may be the very BundleSet the result goes into.
func FetchBundle(ctx context.Context, cfg EndpointConfig, auth x509bundle.Source) (*spiffebundle.Bundle, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var opt federation.FetchOption
	if cfg.Profile == ProfileHTTPSSPIFFE {
		if auth == nil {
			return nil, fmt.Errorf("certs: bundle endpoint %s uses profile https_spiffe and needs a bundle source", cfg.URL)
		}
		opt = federation.WithSPIFFEAuth(auth, cfg.EndpointID)
	} else {
		opt = federation.WithWebPKIRoots(cfg.WebPKIRoots)
	}
	timeout := cfg.FetchTimeout
	if timeout <= 0 {
		timeout = defaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b, err := federation.FetchBundle(ctx, cfg.TrustDomain, cfg.URL, opt)
	if err != nil {
		return nil, fmt.Errorf("certs: fetch bundle for trust domain %q from %s: %w", cfg.TrustDomain.Name(), cfg.URL, err)
	}
	if err := checkBundle(cfg.TrustDomain, "endpoint "+cfg.URL, b.X509Authorities()); err != nil {
		return nil, err
	}
	return b, nil
}

// AddEndpoint keeps cfg.TrustDomain's bundle current from a bundle endpoint.
// It fetches at once in the background, then at the bundle's refresh hint
// (or cfg.DefaultRefresh). A failed fetch or a rejected bundle is logged and
// counted, and the last good bundle stays in use.
func (s *BundleSet) AddEndpoint(cfg EndpointConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if err := s.claim(cfg.TrustDomain, "endpoint "+cfg.URL, true); err != nil {
		return err
	}
	go s.pollEndpoint(cfg)
	return nil
}

func (s *BundleSet) pollEndpoint(cfg EndpointConfig) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	refresh := cfg.DefaultRefresh
	if refresh <= 0 {
		refresh = defaultRefresh
	}
	retry := cfg.RetryInterval
	if retry <= 0 {
		retry = defaultRetry
	}
	td := cfg.TrustDomain.Name()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		next := refresh
		b, err := FetchBundle(ctx, cfg, s)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.metrics.fetch(td, ResultFailure)
			s.failed(cfg.TrustDomain, err)
			next = min(retry, refresh)
		default:
			s.metrics.fetch(td, ResultSuccess)
			s.store(b)
			if hint, ok := b.RefreshHint(); ok && hint > 0 {
				next = hint
			}
			s.log.Debug("bundle fetched", zap.String("trust_domain", td), zap.Duration("next_refresh", next))
		}
		timer.Reset(next)
	}
}
