package peer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/internal/handshake"
)

var (
	peerStateDesc  = prometheus.NewDesc("meshfed_peer_state", "1 for the state each configured peer is in.", []string{"peer", "state"}, nil)
	reconnectDesc  = prometheus.NewDesc("meshfed_peer_reconnects_total", "Times this agent dialed a peer again after a failed stream.", []string{"peer"}, nil)
	importedDesc   = prometheus.NewDesc("meshfed_peer_imported_services", "Services imported from each peer.", []string{"peer"}, nil)
	exportedDesc   = prometheus.NewDesc("meshfed_peer_exported_services", "Services exported to each peer.", []string{"peer"}, nil)
	handshakesDesc = prometheus.NewDesc("meshfed_hamlet_handshakes_in_progress",
		"Connections to the Hamlet listener that have not finished their TLS handshake.", nil, nil)
	cutDesc = prometheus.NewDesc("meshfed_hamlet_handshakes_cut_total",
		"Connections the Hamlet listener closed before they finished their TLS handshake: shed as the oldest when federation.maxHandshakes (saturated) or maxHandshakesPerSource (source_saturated) were in their handshake, or not done within federation.handshakeTimeout (timeout).",
		[]string{"reason"}, nil)
)

// collector reads peer states on scrape, so the numbers always match
// Status.
type collector struct{ m *Manager }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- peerStateDesc
	ch <- reconnectDesc
	ch <- importedDesc
	ch <- exportedDesc
	ch <- refusedDesc
	ch <- handshakesDesc
	ch <- cutDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.m.Status() {
		for _, st := range []State{Waiting, Connecting, Connected, Backoff, Refused, Failed} {
			v := 0.0
			if s.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(peerStateDesc, prometheus.GaugeValue, v, s.Name, string(st))
		}
		ch <- prometheus.MustNewConstMetric(reconnectDesc, prometheus.CounterValue, float64(s.Reconnects), s.Name)
		ch <- prometheus.MustNewConstMetric(importedDesc, prometheus.GaugeValue, float64(s.Imported), s.Name)
		ch <- prometheus.MustNewConstMetric(exportedDesc, prometheus.GaugeValue, float64(s.Exported), s.Name)
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for _, name := range c.m.order {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(c.m.peers[name].refusedTotal), name)
	}
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(c.m.unattributedTotal), "")
	h := c.m.handshakes
	ch <- prometheus.MustNewConstMetric(handshakesDesc, prometheus.GaugeValue, float64(h.InProgress()))
	for _, r := range handshake.CutReasons {
		ch <- prometheus.MustNewConstMetric(cutDesc, prometheus.CounterValue, float64(h.Cuts(r)), r)
	}
}
