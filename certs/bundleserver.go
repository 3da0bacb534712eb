package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
)

// Bounds of the refresh hint derived from the SVID lifetime.
const (
	minDerivedHint = time.Minute
	maxDerivedHint = time.Hour
)

// DefaultRefreshHint is the spiffe_refresh_hint this agent's bundle endpoint
// sends when none is configured: a tenth of its SVID's lifetime, between
// one minute and one hour, in whole seconds. The federation spec asks
// publishers to add a new key 3-5 hints before using it; a tenth keeps that
// lead well inside one SVID lifetime, so a trust domain that rotates its CA
// at the pace of its SVIDs reaches its peers in time, with polls to spare
// when some fail. The minute spares the endpoint from short-lived SVIDs;
// the hour bounds how long peers miss an unplanned rotation.
func DefaultRefreshHint(svidLifetime time.Duration) time.Duration {
	h := min(max(svidLifetime/10, minDerivedHint), maxDerivedHint)
	return h.Truncate(time.Second)
}

// SVIDLifetime is the validity period of src's current SVID.
func SVIDLifetime(src x509svid.Source) (time.Duration, error) {
	s, err := src.GetX509SVID()
	if err != nil {
		return 0, err
	}
	leaf := s.Certificates[0]
	return leaf.NotAfter.Sub(leaf.NotBefore), nil
}

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

// CertificateSource yields the server certificate per handshake, so a
// rotated one is used without a restart; WebCertificate is one.
type CertificateSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// BundleServerConfig is the agent's own bundle endpoint.
type BundleServerConfig struct {
	TrustDomain spiffeid.TrustDomain
	Bundles     spiffebundle.Source
	// RefreshHint is sent as spiffe_refresh_hint, in whole seconds, so it
	// is at least a second; zero sends none (DefaultRefreshHint gives the
	// agent's value).
	RefreshHint time.Duration
	// Exactly one of SVID (profile https_spiffe: the server presents the
	// agent's SVID, read per handshake so it rotates) and Web (profile
	// https_web: a certificate for the endpoint's host name).
	SVID    x509svid.Source
	Web     CertificateSource
	Metrics *Metrics
}

func (c BundleServerConfig) tlsConfig() (*tls.Config, error) {
	var tc *tls.Config
	switch {
	case c.SVID != nil && c.Web != nil:
		return nil, errors.New("certs: bundle server takes an SVID or a web certificate, not both")
	case c.SVID != nil:
		tc = tlsconfig.TLSServerConfig(c.SVID)
	case c.Web != nil:
		tc = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.Web.GetCertificate}
	default:
		return nil, errors.New("certs: bundle server needs an SVID (https_spiffe) or a web certificate (https_web)")
	}
	// Only HTTP/1.1: net/http is handed connections whose handshake is
	// already done, and a bundle is one small GET.
	tc.NextProtos = []string{"http/1.1"}
	return tc, nil
}

// BundleServer is the HTTPS server of this mesh's bundle endpoint.
type BundleServer struct {
	srv     *http.Server
	tls     *tls.Config
	log     *zap.Logger
	metrics *Metrics
}

// NewBundleServer returns the bundle endpoint server, serving the bundle on
// every path. Start it with Serve.
func NewBundleServer(cfg BundleServerConfig, log *zap.Logger) (*BundleServer, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.RefreshHint != 0 && cfg.RefreshHint < time.Second {
		return nil, fmt.Errorf("certs: bundle server refresh hint %s is under a second; spiffe_refresh_hint is in seconds", cfg.RefreshHint)
	}
	h, err := NewBundleHandler(cfg.TrustDomain, cfg.Bundles, cfg.RefreshHint, log)
	if err != nil {
		return nil, err
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	s := &BundleServer{tls: tc, log: log.With(zap.String("trust_domain", cfg.TrustDomain.Name())), metrics: cfg.Metrics}
	s.srv = &http.Server{
		Handler:           s.count(h),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Anything else net/http has to say goes through zap too.
		ErrorLog: zap.NewStdLog(s.log.WithOptions(zap.AddCallerSkip(1))),
	}
	return s, nil
}

// Serve serves on ln (plain TCP: the server does the TLS) until Close, and
// then returns nil.
func (s *BundleServer) Serve(ln net.Listener) error {
	hl := newHandshakeListener(ln, s.tls, func(remote net.Addr, err error) {
		logRefused(s.log, s.metrics, SideServer, remote.String(), err)
	})
	err := s.srv.Serve(hl)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server and closes its connections.
func (s *BundleServer) Close() error { return s.srv.Close() }

func (s *BundleServer) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(cw, r)
		s.metrics.servedRequest(cw.code)
		s.log.Debug("bundle served", zap.String("remote_addr", r.RemoteAddr), zap.Int("code", cw.code))
	})
}

type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}
