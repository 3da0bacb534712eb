package peer

import (
	"crypto/tls"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshfed/meshfed/certs"
)

// SPIFFETLS is mutual TLS with the agent's SVID, verifying each peer against
// its own trust domain's bundle only. Both sources are read on every
// handshake, so a rotated SVID or bundle is used from the next connection
// on while open streams carry on.
type SPIFFETLS struct {
	SVID    x509svid.Source
	Bundles x509bundle.Source
}

// ServerConfig implements TLS.
func (s SPIFFETLS) ServerConfig(authorize tlsconfig.Authorizer) *tls.Config {
	return certs.ServerTLSConfig(s.SVID, s.Bundles, authorize)
}

// ClientConfig implements TLS.
func (s SPIFFETLS) ClientConfig(authorize tlsconfig.Authorizer) *tls.Config {
	return certs.ClientTLSConfig(s.SVID, s.Bundles, authorize)
}
