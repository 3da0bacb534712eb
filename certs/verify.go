package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// CheckPeerLeaf checks a peer's leaf certificate for what SPIFFE chain
// verification does not cover, or covers with a vaguer error:
// x509svid.Verify already rejects more or fewer than one URI SAN, a CA leaf,
// an expired leaf and a foreign trust domain, but it verifies with
// ExtKeyUsageAny, so a server-only SVID would pass as a client. We check the
// structural points first so the handshake error names the problem, and
// leave chain building, the trust domain and authorization to go-spiffe.
//
// usage is the extended key usage the peer's role needs: ClientAuth for a
// peer that dials us, ServerAuth for a peer we dial.
func CheckPeerLeaf(leaf *x509.Certificate, usage x509.ExtKeyUsage, now time.Time) error {
	if n := len(leaf.URIs); n != 1 {
		return fmt.Errorf("certs: peer certificate has %d URI SANs, want exactly 1", n)
	}
	if leaf.IsCA {
		return errors.New("certs: peer certificate is a CA certificate, want a leaf")
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("certs: peer certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("certs: peer certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if !allowsUsage(leaf, usage) {
		return fmt.Errorf("certs: peer certificate lacks extended key usage %s", usageName(usage))
	}
	return nil
}

// allowsUsage follows RFC 5280 and crypto/x509: a certificate without the
// extension is not restricted, and anyExtendedKeyUsage allows everything.
func allowsUsage(c *x509.Certificate, usage x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	return slices.Contains(c.ExtKeyUsage, usage) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	}
	return fmt.Sprintf("%d", int(u))
}

// leafChecker runs CheckPeerLeaf before go-spiffe's verification (next).
func leafChecker(usage x509.ExtKeyUsage, next func([][]byte, [][]*x509.Certificate) error) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, chains [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("certs: peer presented no certificate")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("certs: parse peer certificate: %w", err)
		}
		if err := CheckPeerLeaf(leaf, usage, time.Now()); err != nil {
			return err
		}
		return next(raw, chains)
	}
}
