package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// KindWebCertificate labels the bundle endpoint's https_web certificate in
// the rotation and load failure counters.
const KindWebCertificate = "web_certificate"

// WebCertificate is the https_web bundle endpoint's certificate and key,
// from PEM files reloaded when they change (ACME clients renew every few
// weeks). It is not an SVID: it names the endpoint's host, not a workload.
type WebCertificate struct {
	certFile, keyFile string
	log               *zap.Logger
	metrics           *Metrics
	cur               atomic.Pointer[tls.Certificate]
	watcher           *fileWatcher
}

// NewWebCertificate loads the pair once, failing if it cannot, then
// watches the files; a later bad pair is logged and counted and the last
// good one stays in use.
func NewWebCertificate(certFile, keyFile string, log *zap.Logger, m *Metrics) (*WebCertificate, error) {
	if log == nil {
		log = zap.NewNop()
	}
	w := &WebCertificate{certFile: certFile, keyFile: keyFile, log: log.With(zap.String("cert", certFile)), metrics: m}
	if err := w.load(); err != nil {
		return nil, err
	}
	var err error
	if w.watcher, err = watchFiles([]string{certFile, keyFile}, w.log, w.reload); err != nil {
		return nil, fmt.Errorf("certs: watch web certificate %s: %w", certFile, err)
	}
	return w, nil
}

func (w *WebCertificate) load() error {
	c, err := LoadKeyPair(w.certFile, w.keyFile)
	if err != nil {
		// crypto/tls names what is wrong with the pair, never key bytes.
		return fmt.Errorf("certs: load web certificate %s with key %s: %w", w.certFile, w.keyFile, err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return fmt.Errorf("certs: parse web certificate %s: %w", w.certFile, err)
	}
	c.Leaf = leaf
	prev := w.cur.Swap(&c)
	fields := []zap.Field{zap.Strings("dns_names", leaf.DNSNames), zap.Time("not_after", leaf.NotAfter)}
	if time.Now().After(leaf.NotAfter) {
		w.log.Warn("loaded an expired web certificate; peers will refuse the bundle endpoint until it is replaced", fields...)
	}
	switch {
	case prev == nil:
		w.log.Info("web certificate loaded", fields...)
	case !prev.Leaf.Equal(leaf):
		w.metrics.rotated(KindWebCertificate, "bundle_endpoint")
		w.log.Info("web certificate rotated", fields...)
	}
	return nil
}

func (w *WebCertificate) reload() {
	if err := w.load(); err != nil {
		w.metrics.loadFailed(KindWebCertificate, "bundle_endpoint")
		w.log.Error("web certificate load failed; keeping the last good certificate", zap.Error(err))
	}
}

// GetCertificate implements CertificateSource.
func (w *WebCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return w.cur.Load(), nil
}

// Close stops watching the files.
func (w *WebCertificate) Close() error { return w.watcher.Close() }
