package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Reasons a TLS handshake was refused, as counted and logged. The set is
// closed so the metric's label cardinality stays bounded whatever a remote
// side sends.
const (
	ReasonPlaintextHTTP    = "plaintext_http"    // an HTTP request on the TLS port
	ReasonNotTLS           = "not_tls"           // something else that is not TLS
	ReasonRejectedByPeer   = "rejected_by_peer"  // the other side sent an alert, e.g. it does not trust our certificate
	ReasonUnknownAuthority = "unknown_authority" // the certificate chains to no trusted root or bundle
	ReasonExpired          = "expired"           // the certificate is expired or not yet valid
	ReasonHostnameMismatch = "hostname_mismatch" // https_web: the certificate does not name the URL's host
	ReasonNoBundle         = "no_bundle"         // https_spiffe: no bundle for the certificate's trust domain
	ReasonUnexpectedID     = "unexpected_id"     // https_spiffe: the SVID has another SPIFFE ID
	ReasonNotSVID          = "not_svid"          // https_spiffe: the certificate is not an X509-SVID
	ReasonBadCertificate   = "bad_certificate"   // any other certificate verification failure
	ReasonTimeout          = "timeout"           // the handshake did not finish in time
	ReasonClosed           = "closed"            // the connection ended before the handshake finished
	ReasonOther            = "other"             // versions, cipher suites, anything else
)

// handshakeError is a certificate verification failure whose reason is
// known where it happened, so it need not be guessed from a message.
type handshakeError struct {
	reason string
	err    error
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// HandshakeFailureReason classifies a failed TLS handshake into one of the
// Reason constants, from the error's type rather than its text.
func HandshakeFailureReason(err error) string {
	var he *handshakeError
	var rh tls.RecordHeaderError
	var op *net.OpError
	var alert tls.AlertError
	switch {
	case errors.As(err, &he):
		return he.reason
	case errors.As(err, &rh):
		if looksLikeHTTP(rh.RecordHeader) {
			return ReasonPlaintextHTTP
		}
		return ReasonNotTLS
	case errors.As(err, &op) && op.Op == "remote error":
		return ReasonRejectedByPeer
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return ReasonTimeout
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed):
		return ReasonClosed
	case errors.As(err, &alert):
		return ReasonOther
	}
	return certificateReason(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// certificateReason classifies a certificate verification error, wrapped
// by crypto/tls or by go-spiffe (which wraps crypto/x509's errors).
func certificateReason(err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown):
		return ReasonUnknownAuthority
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return ReasonExpired
	case errors.As(err, &host):
		return ReasonHostnameMismatch
	case errors.As(err, &invalid) || errors.As(err, &verify):
		return ReasonBadCertificate
	}
	return ReasonOther
}

// looksLikeHTTP is what net/http checks before it answers a plaintext
// request on a TLS port with 400.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// handshakeTimeout bounds a bundle endpoint handshake, as ReadHeaderTimeout
// bounds the request after it.
const handshakeTimeout = 10 * time.Second

// handshakeListener completes each TLS handshake before net/http sees the
// connection. net/http would report a failed handshake only as an
// unstructured "http: TLS handshake error" line; here the typed error is
// at hand, so each refusal is logged with its reason and remote address
// and counted. net/http takes the *tls.Conn as it is (a second Handshake
// is a no-op), so requests still see their TLS state.
type handshakeListener struct {
	inner     net.Listener
	cfg       *tls.Config
	onRefused func(remote net.Addr, err error)

	conns     chan net.Conn
	errs      chan error
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

func newHandshakeListener(inner net.Listener, cfg *tls.Config, onRefused func(net.Addr, error)) *handshakeListener {
	l := &handshakeListener{inner: inner, cfg: cfg, onRefused: onRefused,
		conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{})}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// acceptLoop hands every raw connection to its own handshake, so a slow
// client never holds up the next one.
func (l *handshakeListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // http.Server backs off before it calls Accept again
			}
			return
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func (l *handshakeListener) handshake(c net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(c, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	go func() {
		select {
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := tc.HandshakeContext(ctx); err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader) {
			// The answer net/http gives, so a curl without https learns why.
			_, _ = io.WriteString(rh.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		_ = c.Close()
		select {
		case <-l.done: // cut short by Close, not refused
		default:
			l.onRefused(c.RemoteAddr(), err)
		}
		return
	}
	select {
	case l.conns <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and waits for pending handshakes to end.
func (l *handshakeListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.wg.Wait()
	})
	return err
}

func (l *handshakeListener) Addr() net.Addr { return l.inner.Addr() }

// logRefused logs one refused bundle endpoint handshake. A connection that
// closes before saying anything is what TCP health checks do, so it is
// logged at debug level; it is still counted.
func logRefused(log *zap.Logger, m *Metrics, side string, remote string, err error, fields ...zap.Field) {
	reason := HandshakeFailureReason(err)
	m.refusedHandshake(side, reason)
	fields = append(fields, zap.String("side", side), zap.String("reason", reason), zap.String("remote_addr", remote), zap.Error(err))
	if reason == ReasonClosed {
		log.Debug("bundle endpoint TLS handshake ended early", fields...)
		return
	}
	log.Warn("bundle endpoint TLS handshake refused", fields...)
}
