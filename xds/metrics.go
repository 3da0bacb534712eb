package xds

import (
	"github.com/prometheus/client_golang/prometheus/promauto"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	refused      prometheus.Counter
	overNode     prometheus.Counter
	overIdentity prometheus.Counter
	overServer   prometheus.Counter
	noRequest    prometheus.Counter
	nodeChanged  prometheus.Counter
	// connectAllowed and connectDenied count the Consul Connect callers
	// the egress asked about.
	connectAllowed, connectDenied prometheus.Counter
	streams                       prometheus.Gauge
	nacks                         *prometheus.CounterVec
	ignoredNacks                  *prometheus.CounterVec
	clients                       *prometheus.GaugeVec
	latency                       *prometheus.HistogramVec
}

// newMetrics registers the server's metrics on reg, none when it is nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(prometheus.WrapRegistererWithPrefix("meshfed_xds_", reg))
	counter := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &metrics{
		refused:        counter("refused_streams_total", "Streams over mutual TLS ended because the gateway's identity may not use the node id it asked for."),
		overNode:       counter("refused_streams_over_node_limit_total", "Streams ended because their node id already had as many streams open as it may."),
		overIdentity:   counter("refused_streams_over_identity_limit_total", "Streams over mutual TLS refused because their SPIFFE ID already had as many streams open as it may."),
		overServer:     counter("refused_streams_over_server_limit_total", "Streams refused because the server already had as many streams open as it may."),
		noRequest:      counter("streams_without_request_total", "Streams ended because they sent no request within the first request timeout."),
		nodeChanged:    counter("refused_node_changes_total", "Streams ended because a request named another node id than the one the stream was authorized with."),
		connectAllowed: counter("connect_authorized_total", "Consul Connect callers of an import that Consul's intentions let through."),
		connectDenied:  counter("connect_refused_total", "Consul Connect callers of an import refused: by Consul's intentions, or because Consul could not decide."),
		streams: f.NewGauge(prometheus.GaugeOpts{
			Name: "open_streams",
			Help: "Open xDS streams, those that have not sent their first request yet included.",
		}),
		nacks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "nacks_total",
			Help: "Responses rejected by gateways.",
		}, []string{"role", "type"}),
		ignoredNacks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ignored_nacks_total",
			Help: "NACKs ignored because their nonce is none the server sent on that stream for that type and awaits an answer to.",
		}, []string{"role", "type"}),
		clients: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clients",
			Help: "Connected xDS streams subscribed to a type.",
		}, []string{"role", "type"}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "push_latency_seconds",
			Help:    "Time from applying a version to the cache to a gateway's ACK of it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"role", "type"}),
	}
}

// typeLabel shortens known type URLs and folds any other into "other": type
// URLs come from clients, and must not grow the label set without bound.
func typeLabel(typeURL string) string {
	switch typeURL {
	case resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType,
		resource.SecretType, resource.ScopedRouteType, resource.VirtualHostType,
		resource.RuntimeType, resource.ExtensionConfigType:
		return typeURL[strings.LastIndexByte(typeURL, '/')+1:]
	}
	return "other"
}
