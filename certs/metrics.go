package certs

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics counts bundle fetches, rotations, failed reloads, refused bundle
// endpoint handshakes and served bundles. A nil
// *Metrics is valid and records nothing, so tests and tools that do not
// care need not build one.
type Metrics struct {
	bundleFetches *prometheus.CounterVec
	rotations     *prometheus.CounterVec
	loadFailures  *prometheus.CounterVec
	refused       *prometheus.CounterVec
	served        *prometheus.CounterVec
}

// Label values used by the counters. The name label is a role or a trust
// domain from local configuration, never a value chosen by a peer, so the
// label cardinality is bounded by the configuration.
const (
	KindSVID   = "svid"
	KindBundle = "bundle"

	ResultSuccess = "success"
	ResultFailure = "failure"

	// SideServer is this agent's bundle endpoint refusing a client;
	// SideClient is this agent refusing (or being refused by) a peer's
	// bundle endpoint while fetching.
	SideServer = "server"
	SideClient = "client"
)

// NewMetrics creates the certs counters and registers them on reg. The
// caller owns the registry; nothing is registered globally.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(prometheus.WrapRegistererWithPrefix("meshfed_certs_", reg))
	return &Metrics{
		bundleFetches: f.NewCounterVec(prometheus.CounterOpts{
			Name: "bundle_fetches_total",
			Help: "Bundle endpoint fetches, by trust domain and result (success or failure).",
		}, []string{"trust_domain", "result"}),
		rotations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotations_total",
			Help: "New SVIDs or bundles taken into use, by kind (svid or bundle) and name (role or trust domain).",
		}, []string{"kind", "name"}),
		loadFailures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "load_failures_total",
			Help: "Failed loads of SVIDs or bundles (the last good one stays in use), by kind and name.",
		}, []string{"kind", "name"}),
		refused: f.NewCounterVec(prometheus.CounterOpts{
			Name: "bundle_endpoint_refused_handshakes_total",
			Help: "TLS handshakes refused on the bundle endpoint, by side (server: this agent's endpoint; client: fetching a peer's) and reason.",
		}, []string{"side", "reason"}),
		served: f.NewCounterVec(prometheus.CounterOpts{
			Name: "bundle_endpoint_requests_total",
			Help: "Requests answered by this agent's bundle endpoint, by HTTP status code.",
		}, []string{"code"}),
	}
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

func (m *Metrics) refusedHandshake(side, reason string) {
	if m != nil {
		m.refused.WithLabelValues(side, reason).Inc()
	}
}

func (m *Metrics) servedRequest(code int) {
	if m != nil {
		m.served.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}
