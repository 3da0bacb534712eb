package certs

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshfed/meshfed/model"
)

// checkRole refuses an SVID that cannot serve as role's identity in
// trust domain td: another trust domain's, another role's (two roles'
// files swapped), or, for the ingress gateway, any ID but the one peers
// are told it presents. The agent's must also serve as TLS server (peers
// dial it) and client (it dials peers).
func checkRole(role model.Role, td spiffeid.TrustDomain, v *x509svid.SVID) error {
	if td.IsZero() {
		return nil
	}
	if v.ID.TrustDomain() != td {
		return fmt.Errorf("certs: SVID for role %s has SPIFFE ID %s, which is not in trust domain %q", role, v.ID, td.Name())
	}
	want, err := RoleID(td, role)
	if err != nil {
		return err
	}
	for _, other := range Roles() {
		if oid, _ := RoleID(td, other); other != role && v.ID == oid {
			return fmt.Errorf("certs: SVID for role %s has SPIFFE ID %s, the %s's identity (are two roles' files swapped?)", role, v.ID, roleName(other))
		}
	}
	if role == model.Ingress && v.ID != want {
		return fmt.Errorf("certs: SVID for role ingress has SPIFFE ID %s, but peers are told that this mesh's ingress gateway presents %s and accept no other", v.ID, want)
	}
	if role == model.Agent {
		leaf := v.Certificates[0]
		for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if !allowsUsage(leaf, u) {
				return fmt.Errorf("certs: SVID %s lacks the %s extended key usage the agent needs", v.ID, usageName(u))
			}
		}
	}
	return nil
}

func roleName(r model.Role) string {
	if r == model.Agent {
		return "agent"
	}
	return string(r) + " gateway"
}

// notYetValid is a certificate whose validity starts after now: it may be
// taken at from, without another change on disk.
type notYetValid struct {
	from time.Time
	msg  string
}

func (e *notYetValid) Error() string { return e.msg }

// checkValidity refuses a chain any certificate of which is not valid at
// now: a peer would refuse it in every handshake.
func checkValidity(what string, chain []*x509.Certificate, now time.Time) error {
	for i, c := range chain {
		which := what
		if i > 0 {
			which = fmt.Sprintf("the intermediate CA %q of %s", c.Subject.String(), what)
		}
		switch {
		case now.Before(c.NotBefore):
			return &notYetValid{from: c.NotBefore, msg: fmt.Sprintf("certs: %s (serial %x) is not valid before %s (is this host's clock right?)",
				which, c.SerialNumber, c.NotBefore.UTC().Format(time.RFC3339))}
		case now.After(c.NotAfter):
			return fmt.Errorf("certs: %s (serial %x) expired at %s", which, c.SerialNumber, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
