package runner

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	build      prometheus.Histogram
	changes    prometheus.Counter
	invalid    *prometheus.CounterVec
	rejected   prometheus.Counter
	portErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		build: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "meshfed", Subsystem: "snapshot", Name: "build_duration_seconds",
			Help:    "Time to translate a batch of catalog changes and hand it to the xDS cache (the first batch is the whole catalog).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "snapshot", Name: "service_changes_total",
			Help: "Imports and exports translated after a change.",
		}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "snapshot", Name: "invalid_total",
			Help: "Translations that failed the Envoy checks and were not published.",
		}, []string{"kind"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "snapshot", Name: "cache_rejections_total",
			Help: "Batches in which the xDS cache refused a resource.",
		}),
		portErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "snapshot", Name: "egress_port_errors_total",
			Help: "Failed egress port allocations (range full or store error).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.build, m.changes, m.invalid, m.rejected, m.portErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
