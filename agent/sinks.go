package agent

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/registry"
)

// sink is a registry the imports are published in, and how that went.
type sink struct {
	name string
	registry.Sink
	// antiEntropy is how often the sink is synced though nothing changed.
	antiEntropy time.Duration

	mu    sync.Mutex
	state SinkStatus
}

// SinkStatus is how publishing the imports in one registry goes, or
// reading the exports from their source.
type SinkStatus struct {
	// Name is the registry: consul; or exports for the source of the
	// exports.
	Name string `json:"name"`
	// Healthy is false while the last sync failed.
	Healthy bool `json:"healthy"`
	// LastSync is the last sync that succeeded.
	LastSync time.Time `json:"lastSync,omitzero"`
	// FailingSince is the first of the failures since the last success.
	FailingSince time.Time `json:"failingSince,omitzero"`
	LastError    string    `json:"lastError,omitempty"`
}

func (s *sink) status() SinkStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func (s *sink) record(err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.state = SinkStatus{Name: s.name, Healthy: true, LastSync: now}
		return
	}
	if s.state.Healthy || s.state.FailingSince.IsZero() {
		s.state.FailingSince = now
	}
	s.state.Healthy, s.state.LastError = false, err.Error()
}

// Sinks reports each registry the imports are published in, in the order
// configured.
func (a *Agent) Sinks() []SinkStatus { return a.published.status() }

// ExportSource reports how reading the exports from their source (the
// registry file, Consul) goes; nil when there is none.
func (a *Agent) ExportSource() *SinkStatus { return a.exports.status() }

// Degraded lists what works less than it should while the agent still
// serves: a registry that the imports cannot be published in, a source of
// the exports that cannot be read (its last exports stay), an SVID or a
// trust bundle refused or failing (the last good one stays), an SVID in
// use that expired, imports held on a peer's bundle that has not loaded.
// Readiness stays: the gateways and peers are served all the same.
func (a *Agent) Degraded() []string {
	return a.degraded(a.creds.all.SVIDStates())
}

// degraded is Degraded with the SVID states read once by the caller, so
// that a status shows the same states in its table and its problems.
func (a *Agent) degraded(svids []certs.SVIDState) []string {
	out := a.creds.problems(time.Now(), svids)
	out = append(out, holdProblems(a.bundleHolds())...)
	if s := a.ExportSource(); s != nil && !s.Healthy {
		since := ""
		if !s.FailingSince.IsZero() {
			since = " since " + s.FailingSince.UTC().Format(time.RFC3339)
		}
		out = append(out, fmt.Sprintf("exports: reading the exports has failed%s: %s", since, s.LastError))
	}
	for _, s := range a.Sinks() {
		if !s.Healthy && !s.FailingSince.IsZero() {
			out = append(out, fmt.Sprintf("%s: publishing the imports has failed since %s: %s", s.Name, s.FailingSince.UTC().Format(time.RFC3339), s.LastError))
		}
	}
	return out
}

// addSink adds a registry to publish the imports in.
func (a *Agent) addSink(name string, s registry.Sink, antiEntropy time.Duration) error {
	sk := &sink{name: name, Sink: s, antiEntropy: antiEntropy, state: SinkStatus{Name: name}}
	a.published.sinks = append(a.published.sinks, sk)
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "meshfed_registry_sink_up",
		Help:        "1 while the last sync of the imports into the registry succeeded, 0 while it failed (or before the first).",
		ConstLabels: prometheus.Labels{"sink": name},
	}, func() float64 {
		if sk.status().Healthy {
			return 1
		}
		return 0
	})
	return a.reg.Register(up)
}
