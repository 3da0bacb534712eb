package main

import (
	"context"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/agent"
)

var (
	readyDesc = prometheus.NewDesc("meshfed_ready",
		"1 while the agent is ready (/readyz answers ok), 0 while it is starting.", nil, nil)
	gatewayDesc = prometheus.NewDesc("meshfed_gateway_streams",
		"Connected gateway streams by node id, role, xDS type and state (SYNCED, STALE, NACKED, or UNSERVED for a node id that is none of this agent's gateways, counted with node and role empty), as meshfed gateways shows them.",
		[]string{"node", "role", "type", "state"}, nil)
)

// gatewayStates are the states every node id and type is given a sample
// for, 0 included, so that a rule sees a state end rather than vanish.
var gatewayStates = []string{agent.Synced, agent.Stale, agent.Nacked}

// agentCollector reads, at each scrape, what /readyz and meshfed gateways
// show, so that alerts need no other source and never lag behind them.
type agentCollector struct{ a *agent.Agent }

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- readyDesc
	ch <- gatewayDesc
}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	ready := 0.0
	if c.a.Ready() == nil {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready)

	views, _ := c.a.Gateways(context.Background())
	gws, _ := views.([]agent.GatewayView)
	type key struct{ node, role, typ string }
	counts := map[key]map[string]int{}
	var order []key
	for _, g := range gws {
		for _, t := range g.Types {
			k := key{g.NodeID, g.Role, typeLabel(t.TypeURL)}
			if t.State == agent.Unserved {
				// A node id that is none of ours is the client's choice:
				// it must not grow the label set.
				k = key{"", "", k.typ}
			}
			if counts[k] == nil {
				counts[k] = map[string]int{}
				order = append(order, k)
			}
			counts[k][t.State]++
		}
	}
	for _, k := range order {
		states := gatewayStates
		if k.node == "" {
			states = []string{agent.Unserved}
		}
		for _, st := range states {
			ch <- prometheus.MustNewConstMetric(gatewayDesc, prometheus.GaugeValue, float64(counts[k][st]), k.node, k.role, k.typ, st)
		}
	}
}

// typeLabel is the message name of a type meshfed serves
// (envoy.config.listener.v3.Listener, ...), as meshfed_xds_nacks_total
// gives it, and "other" for any other a client asked for: type URLs come
// from clients and must not grow the label set.
func typeLabel(typeURL string) string {
	switch typeURL {
	case resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType,
		resource.SecretType, resource.ScopedRouteType, resource.VirtualHostType:
		return typeURL[strings.LastIndexByte(typeURL, '/')+1:]
	}
	return "other"
}
