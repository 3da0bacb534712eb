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
	settling          settler
}

// NewWebCertificate loads the pair once, failing if it cannot or if it is
// not valid now, then watches the files; a later pair that cannot be used
// (or is not valid) leaves the last good one in use, and once it has
// lasted settle it is logged and counted.
func NewWebCertificate(certFile, keyFile string, settle time.Duration, log *zap.Logger, m *Metrics) (*WebCertificate, error) {
	if log == nil {
		log = zap.NewNop()
	}
	w := &WebCertificate{certFile: certFile, keyFile: keyFile, log: log.With(zap.String("cert", certFile)), metrics: m, settling: settler{settle: settle}}
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
	if err := checkValidity("the web certificate in "+w.certFile, []*x509.Certificate{leaf}, time.Now()); err != nil {
		return err
	}
	prev := w.cur.Swap(&c)
	fields := []zap.Field{zap.Strings("dns_names", leaf.DNSNames), zap.Time("not_after", leaf.NotAfter)}
	switch {
	case prev == nil:
		w.log.Info("web certificate loaded", fields...)
	case !prev.Leaf.Equal(leaf):
		w.metrics.rotated(KindWebCertificate, "bundle_endpoint")
		w.log.Info("web certificate rotated", fields...)
	}
	return nil
}

// reload runs on the watcher's goroutine only.
func (w *WebCertificate) reload(event bool) time.Duration {
	if event {
		w.settling.changed()
	}
	err := w.load()
	if err == nil {
		w.settling.ok()
		return 0
	}
	if wait := w.settling.fail(time.Now()); wait > 0 {
		w.log.Debug("web certificate files not usable yet; waiting for the rest of the rotation", zap.Error(err))
		return wait
	}
	if w.settling.report(err) {
		w.metrics.loadFailed(KindWebCertificate, "bundle_endpoint")
		w.log.Error("web certificate refused; keeping the last good certificate", zap.Error(err))
	}
	return 0
}

// GetCertificate implements CertificateSource.
func (w *WebCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return w.cur.Load(), nil
}

// Close stops watching the files.
func (w *WebCertificate) Close() error { return w.watcher.Close() }
