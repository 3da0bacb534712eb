package runner

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	build      prometheus.Histogram
	changes    prometheus.Counter
	invalid    *prometheus.CounterVec
	rejected   prometheus.Counter
	portErrors prometheus.Counter
}

// newMetrics registers the runner's metrics on reg, none when it is nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(prometheus.WrapRegistererWithPrefix("meshfed_snapshot_", reg))
	return &metrics{
		build: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "build_duration_seconds",
			Help:    "Time to translate a batch of catalog changes and hand it to the xDS cache (the first batch is the whole catalog).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		changes: f.NewCounter(prometheus.CounterOpts{
			Name: "service_changes_total",
			Help: "Imports and exports translated after a change.",
		}),
		invalid: f.NewCounterVec(prometheus.CounterOpts{
			Name: "invalid_total",
			Help: "Translations that failed the Envoy checks and were not published.",
		}, []string{"kind"}),
		rejected: f.NewCounter(prometheus.CounterOpts{
			Name: "cache_rejections_total",
			Help: "Batches in which the xDS cache refused a resource.",
		}),
		portErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "egress_port_errors_total",
			Help: "Failed egress port allocations (range full or store error).",
		}),
	}
}
