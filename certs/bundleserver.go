package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
)

// NewBundleHandler serves td's bundle from src in the SPIFFE bundle format,
// read from src on every request so a rotated bundle is served at once. A
// positive refreshHint is advertised to the fetching peers.
func NewBundleHandler(td spiffeid.TrustDomain, src spiffebundle.Source, refreshHint time.Duration, log *zap.Logger) (http.Handler, error) {
	if td.IsZero() {
		return nil, errors.New("certs: bundle handler needs a trust domain")
	}
	if src == nil {
		return nil, errors.New("certs: bundle handler needs a bundle source")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if refreshHint > 0 {
		src = hintSource{src: src, hint: refreshHint}
	}
	h, err := federation.NewHandler(td, src, federation.WithLogger(spiffeLogger{log.With(zap.String("trust_domain", td.Name()))}))
	if err != nil {
		return nil, fmt.Errorf("certs: bundle handler: %w", err)
	}
	return h, nil
}

// hintSource stamps a refresh hint on a copy, leaving the shared bundle as
// it is.
type hintSource struct {
	src  spiffebundle.Source
	hint time.Duration
}

func (h hintSource) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	b, err := h.src.GetBundleForTrustDomain(td)
	if err != nil {
		return nil, err
	}
	b = b.Clone()
	b.SetRefreshHint(h.hint)
	return b, nil
}

// BundleServerConfig is the agent's own bundle endpoint.
type BundleServerConfig struct {
	Addr        string // e.g. ":8443"
	TrustDomain spiffeid.TrustDomain
	Bundles     spiffebundle.Source
	RefreshHint time.Duration
	// Exactly one of SVID (profile https_spiffe: the server presents the
	// agent's SVID, read per handshake so it rotates) and Certificate
	// (profile https_web).
	SVID        x509svid.Source
	Certificate *tls.Certificate
}

// NewBundleServer returns an HTTPS server for the bundle endpoint, serving
// the bundle on every path. Start it with srv.ListenAndServeTLS("", "") or
// srv.ServeTLS(listener, "", ""); the certificates come from TLSConfig.
func NewBundleServer(cfg BundleServerConfig, log *zap.Logger) (*http.Server, error) {
	h, err := NewBundleHandler(cfg.TrustDomain, cfg.Bundles, cfg.RefreshHint, log)
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	switch {
	case cfg.SVID != nil && cfg.Certificate != nil:
		return nil, errors.New("certs: bundle server takes an SVID or a web certificate, not both")
	case cfg.SVID != nil:
		tc = tlsconfig.TLSServerConfig(cfg.SVID)
	case cfg.Certificate != nil:
		tc = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cfg.Certificate}}
	default:
		return nil, errors.New("certs: bundle server needs an SVID (https_spiffe) or a web certificate (https_web)")
	}
	return &http.Server{
		Addr:              cfg.Addr,
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}, nil
}
