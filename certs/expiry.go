package certs

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RoleBundle is the role label of a trust bundle's expiry: the bundle is
// no one's identity, it is what verifies the trust domain's.
const RoleBundle = "bundle"

// Expiry is when one certificate in use stops being valid: a role's SVID,
// or the first CA of a trust bundle to expire.
type Expiry struct {
	// Role is agent, egress, ingress, or RoleBundle.
	Role        string
	TrustDomain string
	// ID is the SVID's SPIFFE ID; empty for a bundle.
	ID       string
	NotAfter time.Time
}

// Expiries lists the expiry of every SVID (in role order) and of every
// bundle (by trust domain) in use now. A bundle's is its earliest CA's:
// from then on it verifies less than it did.
func (id *Identity) Expiries() []Expiry {
	var out []Expiry
	for _, r := range Roles() {
		src, ok := id.svids[r]
		if !ok {
			continue
		}
		svid, err := src.GetX509SVID()
		if err != nil || len(svid.Certificates) == 0 {
			continue
		}
		out = append(out, Expiry{Role: string(r), TrustDomain: svid.ID.TrustDomain().Name(), ID: svid.ID.String(), NotAfter: svid.Certificates[0].NotAfter})
	}
	for _, td := range id.bundles.TrustDomains() {
		b, err := id.bundles.GetX509BundleForTrustDomain(td)
		if err != nil || len(b.X509Authorities()) == 0 {
			continue
		}
		var first time.Time
		for _, c := range b.X509Authorities() {
			if first.IsZero() || c.NotAfter.Before(first) {
				first = c.NotAfter
			}
		}
		out = append(out, Expiry{Role: RoleBundle, TrustDomain: td.Name(), NotAfter: first})
	}
	return out
}

// Expiring are the expiries before now+window, soonest first.
func Expiring(all []Expiry, now time.Time, window time.Duration) []Expiry {
	var out []Expiry
	for _, e := range all {
		if e.NotAfter.Before(now.Add(window)) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b Expiry) int { return a.NotAfter.Compare(b.NotAfter) })
	return out
}

var expiryDesc = prometheus.NewDesc("meshfed_certificate_expiry_timestamp_seconds",
	"When each SVID in use (role agent, egress or ingress) and the first CA of each trust bundle (role bundle) expire, in Unix seconds.",
	[]string{"role", "trust_domain"}, nil)

// expiryCollector reads the certificates at each scrape, so a rotation
// shows at once and nothing has to remember to update a gauge.
type expiryCollector struct{ id *Identity }

// NewExpiryCollector exports meshfed_certificate_expiry_timestamp_seconds
// for id's SVIDs and bundles.
func NewExpiryCollector(id *Identity) prometheus.Collector { return expiryCollector{id} }

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.id.Expiries() {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(e.NotAfter.Unix()), e.Role, e.TrustDomain)
	}
}
