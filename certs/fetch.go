package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// maxBundleSize bounds what a bundle endpoint may send: a bundle with a
// few dozen keys is tens of kilobytes.
const maxBundleSize = 1 << 20

// fetchInfo is what a fetch learned besides its result: the address it
// reached and, when the TLS handshake failed, why.
type fetchInfo struct {
	remote    string
	handshake error
}

// fetch does one GET of cfg's bundle. It does what go-spiffe's
// federation.FetchBundle does (whose TLS configurations it reuses), and
// also: reports a failed handshake with its typed reason, refuses an HTTP
// error status, bounds the body, and follows a redirect only to a URL the
// spec allows (https, no user information), with the same authentication.
func fetch(ctx context.Context, cfg EndpointConfig, auth x509bundle.Source) (*spiffebundle.Bundle, fetchInfo, error) {
	var info fetchInfo
	tc, err := clientTLS(cfg, auth)
	if err != nil {
		return nil, info, err
	}
	ctx, cancel := context.WithTimeout(ctx, cmpOr(cfg.FetchTimeout, defaultFetchTimeout))
	defer cancel()
	var mu sync.Mutex
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		ConnectDone: func(_, addr string, err error) {
			if err == nil {
				mu.Lock()
				info.remote = addr
				mu.Unlock()
			}
		},
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			if err != nil {
				mu.Lock()
				info.handshake = err
				mu.Unlock()
			}
		},
	})
	b, err := get(ctx, cfg, tc)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		return nil, info, fmt.Errorf("certs: fetch bundle for trust domain %q from %s: %w", cfg.TrustDomain.Name(), cfg.URL, err)
	}
	if err := checkBundle(cfg.TrustDomain, "endpoint "+cfg.URL, b.X509Authorities()); err != nil {
		return nil, info, err
	}
	return b, info, nil
}

func get(ctx context.Context, cfg EndpointConfig, tc *tls.Config) (*spiffebundle.Bundle, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.ForceAttemptHTTP2 = false
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: checkRedirect}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, http.NoBody)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the endpoint answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if len(body) > maxBundleSize {
		return nil, fmt.Errorf("the bundle is over %d bytes", maxBundleSize)
	}
	return spiffebundle.Parse(cfg.TrustDomain, body)
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if err := checkEndpointURL(req.URL.String()); err != nil {
		return fmt.Errorf("redirect refused: %w", err)
	}
	return nil
}

// clientTLS is go-spiffe's TLS client configuration for the profile, with
// each SPIFFE verification failure tagged with its reason.
func clientTLS(cfg EndpointConfig, auth x509bundle.Source) (*tls.Config, error) {
	if cfg.Profile == ProfileHTTPSWeb {
		var roots *x509.CertPool // nil: the system roots
		if cfg.WebCAFile != "" {
			var err error
			if roots, err = loadRoots(cfg.WebCAFile); err != nil {
				return nil, err
			}
		}
		return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
	}
	if auth == nil {
		return nil, fmt.Errorf("certs: bundle endpoint %s uses profile https_spiffe and needs a bundle source", cfg.URL)
	}
	tc := tlsconfig.TLSClientConfig(reasonSource{auth}, authorizeID(cfg.EndpointID))
	verify := tc.VerifyPeerCertificate
	tc.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if err := isSVID(raw); err != nil {
			return err
		}
		err := verify(raw, chains)
		var he *handshakeError
		if err != nil && !errors.As(err, &he) {
			reason := certificateReason(err)
			if reason == ReasonOther {
				reason = ReasonBadCertificate
			}
			return &handshakeError{reason: reason, err: err}
		}
		return err
	}
	return tc, nil
}

func isSVID(raw [][]byte) error {
	if len(raw) == 0 {
		return &handshakeError{reason: ReasonNotSVID, err: errors.New("certs: the endpoint presented no certificate")}
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return &handshakeError{reason: ReasonBadCertificate, err: fmt.Errorf("certs: parse the endpoint's certificate: %w", err)}
	}
	if _, err := x509svid.IDFromCert(leaf); err != nil {
		return &handshakeError{reason: ReasonNotSVID, err: fmt.Errorf("certs: the endpoint's certificate is not an X509-SVID: %w", err)}
	}
	return nil
}

// reasonSource marks a missing bundle, so the refusal says no_bundle.
type reasonSource struct{ src x509bundle.Source }

func (r reasonSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b, err := r.src.GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, &handshakeError{reason: ReasonNoBundle, err: err}
	}
	return b, nil
}

func authorizeID(want spiffeid.ID) tlsconfig.Authorizer {
	inner := tlsconfig.AuthorizeID(want)
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if err := inner(id, chains); err != nil {
			return &handshakeError{reason: ReasonUnexpectedID, err: err}
		}
		return nil
	}
}
