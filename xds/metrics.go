package xds

import (
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	refused      prometheus.Counter
	overNode     prometheus.Counter
	nodeChanged  prometheus.Counter
	nacks        *prometheus.CounterVec
	ignoredNacks *prometheus.CounterVec
	clients      *prometheus.GaugeVec
	latency      *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "meshfed", Subsystem: "xds", Name: name, Help: help})
	}
	m := &metrics{
		refused:     counter("refused_streams_total", "Streams over mutual TLS ended because the gateway's identity may not use the node id it asked for."),
		overNode:    counter("refused_streams_over_node_limit_total", "Streams ended because their node id already had as many streams open as it may."),
		nodeChanged: counter("refused_node_changes_total", "Streams ended because a request named another node id than the one the stream was authorized with."),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "xds", Name: "nacks_total",
			Help: "Responses rejected by gateways.",
		}, []string{"role", "type"}),
		ignoredNacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "xds", Name: "ignored_nacks_total",
			Help: "NACKs ignored because their nonce is none the server sent on that stream for that type and awaits an answer to.",
		}, []string{"role", "type"}),
		clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshfed", Subsystem: "xds", Name: "clients",
			Help: "Connected xDS streams subscribed to a type.",
		}, []string{"role", "type"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "meshfed", Subsystem: "xds", Name: "push_latency_seconds",
			Help:    "Time from applying a version to the cache to a gateway's ACK of it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"role", "type"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.refused, m.overNode, m.nodeChanged, m.nacks, m.ignoredNacks, m.clients, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
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
