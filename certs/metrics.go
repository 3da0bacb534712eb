package certs

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts bundle fetches, rotations and failed reloads. A nil
// *Metrics is valid and records nothing, so tests and tools that do not
// care need not build one.
type Metrics struct {
	bundleFetches *prometheus.CounterVec
	rotations     *prometheus.CounterVec
	loadFailures  *prometheus.CounterVec
}

// Label values used by the counters. The name label is a role or a trust
// domain from local configuration, never a value chosen by a peer, so the
// label cardinality is bounded by the configuration.
const (
	KindSVID   = "svid"
	KindBundle = "bundle"

	ResultSuccess = "success"
	ResultFailure = "failure"
)

// NewMetrics creates the certs counters and registers them on reg. The
// caller owns the registry; nothing is registered globally.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("certs: NewMetrics needs a registerer")
	}
	m := &Metrics{
		bundleFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "certs", Name: "bundle_fetches_total",
			Help: "Bundle endpoint fetches, by trust domain and result (success or failure).",
		}, []string{"trust_domain", "result"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "certs", Name: "rotations_total",
			Help: "New SVIDs or bundles taken into use, by kind (svid or bundle) and name (role or trust domain).",
		}, []string{"kind", "name"}),
		loadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "certs", Name: "load_failures_total",
			Help: "Failed loads of SVIDs or bundles (the last good one stays in use), by kind and name.",
		}, []string{"kind", "name"}),
	}
	for _, c := range []prometheus.Collector{m.bundleFetches, m.rotations, m.loadFailures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) fetch(trustDomain, result string) {
	if m != nil {
		m.bundleFetches.WithLabelValues(trustDomain, result).Inc()
	}
}

func (m *Metrics) rotated(kind, name string) {
	if m != nil {
		m.rotations.WithLabelValues(kind, name).Inc()
	}
}

func (m *Metrics) loadFailed(kind, name string) {
	if m != nil {
		m.loadFailures.WithLabelValues(kind, name).Inc()
	}
}
