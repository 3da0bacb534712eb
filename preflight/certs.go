package preflight

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
)

// identity checks each role's SVID files: they load, the key is the
// certificate's, the SPIFFE ID is this mesh's and the role's, and the
// certificate is valid now and for a while yet.
func (r *Report) identity(now time.Time) {
	id := r.Config.Identity
	td := spiffeid.RequireTrustDomainFromString(r.Config.TrustDomain)
	for _, g := range []struct {
		role model.Role
		f    *config.Files
	}{{model.Agent, id.Agent}, {model.Egress, id.Egress}, {model.Ingress, id.Ingress}} {
		if g.f == nil || (g.role == model.Agent && id.WorkloadAPI != "") {
			continue // the Workload API is asked only when running
		}
		at := "identity." + string(g.role)
		svid, ok := r.loadSVID(at, g.f)
		if !ok {
			continue
		}
		r.svidID(at, td, g.role, svid.ID, g.f.Cert)
		r.expiry(at+".cert", "the certificate in "+g.f.Cert, svid.Certificates[0], now)
	}
}

// loadSVID reads a certificate and its key the way the agent does, and
// says which of the two files is wrong.
func (r *Report) loadSVID(at string, f *config.Files) (*x509svid.SVID, bool) {
	certPEM, err := certs.ReadFile(f.Cert)
	if err != nil {
		r.add(Error, at+".cert", "%v", err)
	}
	keyPEM, kerr := certs.ReadFile(f.Key)
	if kerr != nil {
		r.add(Error, at+".key", "%v", kerr)
	}
	if err != nil || kerr != nil {
		return nil, false
	}
	chain, err := pemCertificates(certPEM)
	if err != nil {
		r.add(Error, at+".cert", "%s: %v", f.Cert, err)
		return nil, false
	}
	key, err := pemKey(keyPEM)
	if err != nil {
		r.add(Error, at+".key", "%s: %v", f.Key, err)
		return nil, false
	}
	if !publicKey(chain[0]).Equal(key.Public()) {
		r.add(Error, at, "the private key in %s does not belong to the certificate in %s", f.Key, f.Cert)
		return nil, false
	}
	svid, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		r.add(Error, at+".cert", "%s is not an X.509 SVID: %s", f.Cert, libError(err))
		return nil, false
	}
	return svid, true
}

type equaler interface{ Equal(crypto.PublicKey) bool }

func publicKey(c *x509.Certificate) equaler {
	if k, ok := c.PublicKey.(equaler); ok {
		return k
	}
	return noKey{}
}

type noKey struct{}

func (noKey) Equal(crypto.PublicKey) bool { return false }

func pemCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return out, nil
}

// pemKey parses the first private key block; its errors never hold key
// bytes.
func pemKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return nil, errors.New("no PEM private key block")
		}
		var k any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot parse the %s block: %v", block.Type, err)
		}
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("a %T is not a signing key", k)
	}
}

// svidID checks the SPIFFE ID against the trust domain and the IDs the
// roles are known by. Peers are told the ingress gateway's ID (the dev
// CA's), and their egress gateways verify exactly it.
func (r *Report) svidID(at string, td spiffeid.TrustDomain, role model.Role, id spiffeid.ID, file string) {
	if id.TrustDomain() != td {
		r.add(Error, at+".cert", "%s holds %s, which is not in this mesh's trust domain %s", file, id, td.Name())
		return
	}
	want, _ := certs.RoleID(td, role)
	if id == want {
		return
	}
	for _, other := range certs.Roles() {
		if oid, _ := certs.RoleID(td, other); other != role && id == oid {
			r.add(Error, at+".cert", "%s holds %s, the %s's ID; %s needs %s (are two roles' files swapped?)", file, id, roleName(other), at, want)
			return
		}
	}
	if role == model.Ingress {
		r.add(Error, at+".cert", "%s holds %s, but peers are told that this mesh's ingress gateway presents %s and accept no other", file, id, want)
		return
	}
	r.add(Warning, at+".cert", "%s holds %s, not %s: peers that list this mesh's SPIFFE IDs (spiffeIds, callers) must name it", file, id, want)
}

func roleName(r model.Role) string {
	if r == model.Agent {
		return "agent"
	}
	return string(r) + " gateway"
}

// expiry warns of a certificate within the warning window and refuses
// one that is not valid now.
func (r *Report) expiry(field, what string, c *x509.Certificate, now time.Time) {
	window := time.Duration(r.Config.Identity.ExpiryWarning)
	switch left := c.NotAfter.Sub(now); {
	case now.Before(c.NotBefore):
		r.add(Error, field, "%s is not valid before %s (is this host's clock right?)", what, c.NotBefore.UTC().Format(time.RFC3339))
	case left <= 0:
		r.add(Error, field, "%s expired at %s, %s ago", what, c.NotAfter.UTC().Format(time.RFC3339), roundDuration(-left))
	case left < window:
		r.add(Warning, field, "%s expires at %s, in %s (identity.expiryWarning is %s)", what, c.NotAfter.UTC().Format(time.RFC3339), roundDuration(left), window)
		r.Findings[len(r.Findings)-1].Expiry = true
	}
}

// roundDuration keeps a duration readable: whole minutes, or whole hours
// beyond a day.
func roundDuration(d time.Duration) time.Duration {
	if d > 24*time.Hour {
		return d.Round(time.Hour)
	}
	return d.Round(time.Minute)
}

// bundles checks every bundle file the configuration names: trust bundles,
// endpoints' bootstrap bundles and web roots, and the bundle endpoint's
// own web certificate.
func (r *Report) bundles(now time.Time) {
	for _, name := range slices.Sorted(maps.Keys(r.Config.TrustBundles)) {
		td := spiffeid.RequireTrustDomainFromString(name)
		src := r.Config.TrustBundles[name]
		at := "trustBundles." + name
		if src.File != "" {
			// The agent reads a bundle file as PEM only.
			if _, err := certs.LoadX509Bundle(td, src.File); err != nil {
				r.add(Error, at+".file", "%s: %s", src.File, libError(err))
			} else if b, err := certs.LoadBundleFile(td, src.File); err != nil {
				r.add(Error, at+".file", "%s", libError(err))
			} else {
				r.bundleExpiry(at+".file", src.File, b.X509Authorities(), now)
			}
		}
		if e := src.Endpoint; e != nil && e.BootstrapBundle != "" {
			if b, err := certs.LoadBundleFile(td, e.BootstrapBundle); err != nil {
				r.add(Error, at+".endpoint.bootstrapBundle", "%s", libError(err))
			} else {
				r.bundleExpiry(at+".endpoint.bootstrapBundle", e.BootstrapBundle, b.X509Authorities(), now)
			}
		}
		if e := src.Endpoint; e != nil && e.CAFile != "" {
			if b, err := certs.ReadFile(e.CAFile); err != nil {
				r.add(Error, at+".endpoint.caFile", "%v", err)
			} else if _, err := pemCertificates(b); err != nil {
				r.add(Error, at+".endpoint.caFile", "%s: %v", e.CAFile, err)
			}
		}
	}
	if be := r.Config.BundleEndpoint; be != nil && be.WebCertificate != nil {
		f := be.WebCertificate
		if c, err := certs.LoadKeyPair(f.Cert, f.Key); err != nil {
			r.add(Error, "bundleEndpoint.webCertificate", "%s with key %s: %v", f.Cert, f.Key, err)
		} else if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
			r.expiry("bundleEndpoint.webCertificate", "the certificate in "+f.Cert, leaf, now)
		}
	}
}

// libError is err without the "package: " prefix libraries put first:
// the finding already says where it is.
func libError(err error) string {
	msg := err.Error()
	for _, p := range []string{"x509bundle: ", "x509svid: ", "spiffebundle: ", "certs: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// bundleExpiry refuses a bundle whose every CA has expired, and warns of
// the earliest CA to expire.
func (r *Report) bundleExpiry(field, file string, cas []*x509.Certificate, now time.Time) {
	if len(cas) == 0 {
		return
	}
	earliest := slices.MinFunc(cas, func(a, b *x509.Certificate) int { return a.NotAfter.Compare(b.NotAfter) })
	latest := slices.MaxFunc(cas, func(a, b *x509.Certificate) int { return a.NotAfter.Compare(b.NotAfter) })
	if !latest.NotAfter.After(now) {
		r.expiry(field, "every CA in "+file, latest, now)
		return
	}
	what := "a CA in " + file
	if len(cas) == 1 {
		what = "the CA in " + file
	}
	if !earliest.NotAfter.After(now) {
		r.add(Warning, field, "%s expired at %s; the bundle's other CAs are still valid", what, earliest.NotAfter.UTC().Format(time.RFC3339))
		return
	}
	r.expiry(field, what, earliest, now)
}
