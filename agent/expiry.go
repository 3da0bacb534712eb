package agent

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/certs"
)

// expiryCheckEvery is how often the agent looks again for certificates
// about to expire.
const expiryCheckEvery = time.Hour

// watchExpiry logs at start when each SVID and bundle expires, and warns,
// at start and then hourly, of each within identity.expiryWarning: a
// development SVID lasts 30 days, and nothing else would say so before
// peers start refusing it. meshfed_certificate_expiry_timestamp_seconds
// is what alerts should use.
func (c *credentials) watchExpiry(ctx context.Context) {
	now := time.Now()
	for _, e := range c.all.Expiries() {
		c.log.Info("certificate expiry", expiryFields(e, now)...)
	}
	tick := time.NewTicker(expiryCheckEvery)
	defer tick.Stop()
	for {
		window := time.Duration(c.cfg.Identity.ExpiryWarning)
		for _, e := range certs.Expiring(c.all.Expiries(), now, window) {
			c.log.Warn("certificate expires within identity.expiryWarning; replace it", append(expiryFields(e, now), zap.Duration("warning_window", window))...)
		}
		select {
		case <-ctx.Done():
			return
		case now = <-tick.C:
		}
	}
}

func expiryFields(e certs.Expiry, now time.Time) []zap.Field {
	f := []zap.Field{zap.String("role", e.Role), zap.String("trust_domain", e.TrustDomain),
		zap.String("not_after", e.NotAfter.UTC().Format(time.RFC3339)), zap.Duration("expires_in", e.NotAfter.Sub(now).Round(time.Minute))}
	if e.ID != "" {
		f = append(f, zap.String("spiffe_id", e.ID))
	}
	return f
}
