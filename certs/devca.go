package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const (
	DefaultCATTL   = 365 * 24 * time.Hour
	DefaultLeafTTL = 30 * 24 * time.Hour
	// clockSkew backdates NotBefore so a peer whose clock is a little
	// behind still accepts a certificate minted just now.
	clockSkew = time.Minute
)

// CA is a development certificate authority for one trust domain, kept in
// memory. It is not a production CA: it exists for `meshfed dev-ca`, demos
// and tests (including other packages' tests, which is why it is not in a
// _test file).
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// CertOption fixes fields that are otherwise derived from the clock or
// random, so golden files that record them stay stable. The signatures are
// ECDSA and hence differ on every run: golden files should hold the parsed
// fields, not the PEM.
type CertOption func(*certOptions)

type certOptions struct {
	notBefore, notAfter time.Time
	serial              *big.Int
	dnsNames            []string
	ips                 []net.IP
}

// WithValidity sets NotBefore and NotAfter exactly.
func WithValidity(notBefore, notAfter time.Time) CertOption {
	return func(o *certOptions) { o.notBefore, o.notAfter = notBefore, notAfter }
}

// WithSerial sets the serial number.
func WithSerial(serial int64) CertOption {
	return func(o *certOptions) { o.serial = big.NewInt(serial) }
}

// WithDNSNames adds DNS name SANs to an SVID, for peers that are not
// SPIFFE-aware and verify a host name. The SVID keeps its one URI SAN,
// which is what SPIFFE peers verify.
func WithDNSNames(names ...string) CertOption {
	return func(o *certOptions) { o.dnsNames = append(o.dnsNames, names...) }
}

// WithIPAddresses adds IP address SANs to an SVID, for peers that are not
// SPIFFE-aware and verify the address they dialed.
func WithIPAddresses(ips ...netip.Addr) CertOption {
	return func(o *certOptions) {
		for _, ip := range ips {
			o.ips = append(o.ips, net.IP(ip.AsSlice()))
		}
	}
}

// CheckDNSName accepts what a certificate's DNS name SAN may hold: a host
// name of letters, digits and hyphens, or a wildcard "*." in front of one
// (RFC 5280, RFC 6125 section 6.4.3).
func CheckDNSName(name string) error {
	host := strings.TrimPrefix(name, "*.")
	if host == "" || len(name) > 253 {
		return fmt.Errorf("certs: DNS name %q must be a host name of at most 253 characters", name)
	}
	for _, label := range strings.Split(host, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("certs: DNS name %q has an empty, too long or hyphen-edged label %q", name, label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("certs: DNS name %q holds %q; only letters, digits, hyphens and dots are allowed", name, r)
			}
		}
	}
	return nil
}

func applyCertOptions(ttl time.Duration, opts []CertOption) (certOptions, error) {
	var o certOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.notBefore.IsZero() != o.notAfter.IsZero() {
		return o, errors.New("certs: WithValidity needs both NotBefore and NotAfter")
	}
	if o.notBefore.IsZero() {
		now := time.Now()
		o.notBefore, o.notAfter = now.Add(-clockSkew), now.Add(ttl)
	}
	if !o.notAfter.After(o.notBefore) {
		return o, fmt.Errorf("certs: NotAfter %s is not after NotBefore %s", o.notAfter.Format(time.RFC3339), o.notBefore.Format(time.RFC3339))
	}
	for _, n := range o.dnsNames {
		if err := CheckDNSName(n); err != nil {
			return o, err
		}
	}
	if o.serial == nil {
		s, err := randomSerial()
		if err != nil {
			return o, err
		}
		o.serial = s
	}
	return o, nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // never zero
}

// NewTestCA creates a self-signed ECDSA P-256 root CA for td, valid for one
// year unless WithValidity says otherwise. The CA certificate carries the
// trust domain's SPIFFE ID (spiffe://<td>) as its URI SAN, as SPIRE's do, so
// a bundle served for the wrong trust domain can be recognized.
func NewTestCA(td spiffeid.TrustDomain, opts ...CertOption) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("certs: CA needs a trust domain")
	}
	o, err := applyCertOptions(DefaultCATTL, opts)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          o.serial,
		Subject:               pkix.Name{Organization: []string{"meshfed development CA"}, CommonName: td.Name()},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse CA certificate: %w", err)
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

// TrustDomain is the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Certificate is the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM is the CA certificate as PEM; it is also the trust domain's bundle.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// KeyPEM is the CA private key as PKCS#8 PEM.
func (ca *CA) KeyPEM() (PrivateKeyPEM, error) { return encodeKey(ca.key) }

// X509Bundle is the trust domain's X.509 bundle: this CA alone.
func (ca *CA) X509Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// Bundle is the trust domain's SPIFFE bundle: this CA alone.
func (ca *CA) Bundle() *spiffebundle.Bundle {
	return spiffebundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// Issue mints an X.509 SVID for id, valid for ttl (DefaultLeafTTL when
// zero) unless WithValidity says otherwise: ECDSA P-256, exactly one URI
// SAN, not a CA, digitalSignature, serverAuth and clientAuth.
func (ca *CA) Issue(id spiffeid.ID, ttl time.Duration, opts ...CertOption) (chainPEM []byte, keyPEM PrivateKeyPEM, err error) {
	if id.TrustDomain() != ca.td {
		return nil, nil, fmt.Errorf("certs: SPIFFE ID %q is not in the CA's trust domain %q", id, ca.td.Name())
	}
	if ttl <= 0 {
		ttl = DefaultLeafTTL
	}
	o, err := applyCertOptions(ttl, opts)
	if err != nil {
		return nil, nil, err
	}
	return ca.IssueTemplate(&x509.Certificate{
		SerialNumber:          o.serial,
		Subject:               pkix.Name{Organization: []string{"meshfed"}},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              o.dnsNames,
		IPAddresses:           o.ips,
	})
}

// IssueX509SVID is Issue, parsed into a go-spiffe SVID (itself an
// x509svid.Source, ready for ServerTLSConfig or ClientTLSConfig).
func (ca *CA) IssueX509SVID(id spiffeid.ID, ttl time.Duration, opts ...CertOption) (*x509svid.SVID, error) {
	chain, key, err := ca.Issue(id, ttl, opts...)
	if err != nil {
		return nil, err
	}
	return x509svid.Parse(chain, key)
}

// IssueTemplate signs tmpl as given, with a fresh P-256 key, and returns the
// leaf PEM and key PEM. It does no SPIFFE checks, so tests can mint the
// malformed certificates (two URI SANs, CA leaves, wrong usages) that peers
// must reject. A nil SerialNumber gets a random one.
func (ca *CA) IssueTemplate(tmpl *x509.Certificate) (chainPEM []byte, keyPEM PrivateKeyPEM, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	t := *tmpl
	if t.SerialNumber == nil {
		if t.SerialNumber, err = randomSerial(); err != nil {
			return nil, nil, err
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, &t, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: sign certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func encodeKey(key *ecdsa.PrivateKey) (PrivateKeyPEM, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
