package agent

import (
	"fmt"
	"time"

	"github.com/meshfed/meshfed/certs"
)

// SVIDStatus is a role's SVID in use, with what the status makes of it.
type SVIDStatus struct {
	certs.SVIDState
	// Expiring is set when the SVID in use expires within
	// identity.expiryWarning, or has expired.
	Expiring bool `json:"expiring,omitempty"`
}

// svidStatus lists every role's SVID in use, and its last refusal.
func (c *credentials) svidStatus(now time.Time, states []certs.SVIDState) []SVIDStatus {
	window := time.Duration(c.cfg.Identity.ExpiryWarning)
	out := []SVIDStatus{}
	for _, s := range states {
		out = append(out, SVIDStatus{SVIDState: s, Expiring: !s.NotAfter.IsZero() && s.NotAfter.Before(now.Add(window))})
	}
	return out
}

// problems are what needs a look in the certificates: an SVID that
// was refused (the last good one stays in use), one in use that expired,
// and a trust bundle whose source fails (its last good bundle stays).
// Each says what is in use meanwhile.
func (c *credentials) problems(now time.Time, states []certs.SVIDState) []string {
	var out []string
	for _, s := range states {
		if s.Refused != "" {
			out = append(out, fmt.Sprintf("identity.%s: an SVID was refused since %s: %s; the last good one (serial %s, valid until %s) stays in use until a good one is written",
				s.Role, s.RefusedAt.UTC().Format(time.RFC3339), s.Refused, s.Serial, s.NotAfter.UTC().Format(time.RFC3339)))
		}
		if !s.NotAfter.IsZero() && now.After(s.NotAfter) {
			out = append(out, fmt.Sprintf("identity.%s: the SVID in use (serial %s) expired at %s; peers refuse it until a valid one is written",
				s.Role, s.Serial, s.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	missing := map[string]bool{}
	for _, td := range c.bundles.Missing() {
		missing[td.Name()] = true
	}
	for _, b := range c.bundles.States() {
		// A bundle that never loaded is told by its hold, once the
		// first configuration is built, and by the readiness before.
		if b.LastError == "" || missing[b.TrustDomain] {
			continue
		}
		msg := fmt.Sprintf("trust bundle %s: %s failed at %s: %s; the bundle in use (%s) stays", b.TrustDomain, b.Source,
			b.LastErrorTime.UTC().Format(time.RFC3339), b.LastError, b.Origin)
		if !b.NextFetch.IsZero() {
			msg += fmt.Sprintf("; next fetch at %s", b.NextFetch.UTC().Format(time.RFC3339))
		}
		out = append(out, msg)
	}
	return out
}
