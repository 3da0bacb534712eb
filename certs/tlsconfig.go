package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ServerTLSConfig is the TLS configuration for accepting Hamlet peers. It is
// go-spiffe's MTLSServerConfig (our SVID read per handshake, the peer's chain
// verified against its own trust domain's bundle, then authorize) with
// CheckPeerLeaf in front, requiring the clientAuth usage.
func ServerTLSConfig(svid x509svid.Source, bundles x509bundle.Source, authorize tlsconfig.Authorizer) *tls.Config {
	c := tlsconfig.MTLSServerConfig(svid, bundles, orDeny(authorize))
	c.VerifyPeerCertificate = leafChecker(x509.ExtKeyUsageClientAuth, c.VerifyPeerCertificate)
	// VerifyPeerCertificate does not run on a resumed session, so a resumed
	// peer would skip a rotated bundle or a changed authorization.
	c.SessionTicketsDisabled = true
	return c
}

// ClientTLSConfig is the TLS configuration for dialing a Hamlet peer: go-spiffe's
// MTLSClientConfig with CheckPeerLeaf in front, requiring serverAuth. It sets
// no session cache, so every connection is fully verified.
func ClientTLSConfig(svid x509svid.Source, bundles x509bundle.Source, authorize tlsconfig.Authorizer) *tls.Config {
	c := tlsconfig.MTLSClientConfig(svid, bundles, orDeny(authorize))
	c.VerifyPeerCertificate = leafChecker(x509.ExtKeyUsageServerAuth, c.VerifyPeerCertificate)
	return c
}

// orDeny makes a missing authorizer fail closed instead of panicking in the
// middle of a handshake.
func orDeny(a tlsconfig.Authorizer) tlsconfig.Authorizer {
	if a != nil {
		return a
	}
	return func(spiffeid.ID, [][]*x509.Certificate) error {
		return errors.New("certs: no peer authorizer configured")
	}
}
