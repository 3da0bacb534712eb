package certs

import (
	"encoding/pem"
	"fmt"
	"io"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const redacted = "[REDACTED]"

// PrivateKeyPEM is a PEM-encoded private key. Its String, GoString, Format
// and MarshalJSON all redact, so a key that ends up in a log field, an error
// or a %v of an enclosing struct never leaks; use the bytes directly (e.g.
// []byte(k)) where the key is really needed.
type PrivateKeyPEM []byte

func (PrivateKeyPEM) String() string               { return redacted }
func (PrivateKeyPEM) GoString() string             { return redacted }
func (PrivateKeyPEM) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, redacted) }
func (PrivateKeyPEM) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (PrivateKeyPEM) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Equal lets go-cmp compare keys without reaching into (and printing) them.
func (k PrivateKeyPEM) Equal(other PrivateKeyPEM) bool { return string(k) == string(other) }

// SVIDMaterial is one role's current X.509 SVID in the form the xDS layer
// puts into an SDS TlsCertificate secret.
type SVIDMaterial struct {
	ID       spiffeid.ID
	ChainPEM []byte // leaf first, then intermediates
	KeyPEM   PrivateKeyPEM
	NotAfter time.Time
}

// BundleMaterial is one trust domain's current X.509 authorities in the form
// the xDS layer puts into an SDS validation context secret.
type BundleMaterial struct {
	TrustDomain spiffeid.TrustDomain
	PEM         []byte
}

func svidMaterial(s *x509svid.SVID) (SVIDMaterial, error) {
	chain, key, err := s.Marshal()
	if err != nil {
		// go-spiffe's marshal errors describe the certificate or key type,
		// never the key bytes, so they are safe to wrap.
		return SVIDMaterial{}, fmt.Errorf("certs: encode SVID %s: %w", s.ID, err)
	}
	return SVIDMaterial{ID: s.ID, ChainPEM: chain, KeyPEM: key, NotAfter: s.Certificates[0].NotAfter}, nil
}

func bundleMaterial(b *x509bundle.Bundle) BundleMaterial {
	var out []byte
	for _, c := range b.X509Authorities() {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return BundleMaterial{TrustDomain: b.TrustDomain(), PEM: out}
}
