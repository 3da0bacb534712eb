package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
)

// The admin API's answers. They hold names, addresses and states, never
// certificate material.

// Status is the answer of /api/v1/status.
type Status struct {
	Mesh     string        `json:"mesh"`
	Ready    bool          `json:"ready"`
	Peers    []PeerStatus  `json:"peers"`
	Gateways []GatewayView `json:"gateways"`
	// Refused are the latest Hamlet connections refused from clients of no
	// configured peer's trust domain (or of none at all).
	Refused []peer.Refusal `json:"refused,omitempty"`
	// Sinks are the registries the imports are published in (Consul),
	// and whether they can be reached.
	Sinks []SinkStatus `json:"sinks,omitempty"`
	// ExportSource is how reading the exports from their source (the
	// registry file, Consul) goes; absent when there is none.
	ExportSource *SinkStatus `json:"exportSource,omitempty"`
	// SVIDs are the SVIDs in use, with the last one refused.
	SVIDs []SVIDStatus `json:"svids"`
	// Bundles are the trust bundles in use and their sources' schedules.
	Bundles []certs.BundleState `json:"bundles"`
	// Held are the peers' trust bundles that had not loaded by the end
	// of the bundle wait and still have not, with what depends on them.
	Held []BundleHold `json:"held,omitempty"`
	// Degraded is what /readyz lists after "ok".
	Degraded []string `json:"degraded,omitempty"`
}

// PeerStatus is a peer's connection and what it made of our exports.
type PeerStatus struct {
	peer.Status
	// Deliveries is the peer's last answer for each service exported to
	// it: an ACK, or a NACK with its code and reason.
	Deliveries []Delivery `json:"deliveries,omitempty"`
	// Rejected are the NACKs this agent sent for the peer's services and
	// that still stand.
	Rejected []Rejection `json:"rejected,omitempty"`
}

// Rejection is a NACK this agent sent for one of a peer's services.
type Rejection struct {
	ResourceID string    `json:"resourceId"`
	Code       string    `json:"code"`
	Message    string    `json:"message"`
	At         time.Time `json:"at,omitzero"`
}

// Delivery is a peer's last answer about one exported service.
type Delivery struct {
	Service string    `json:"service"`
	Acked   bool      `json:"acked"`
	Code    string    `json:"code,omitempty"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// ImportView is one imported service, with where local workloads reach it.
type ImportView struct {
	Peer       string              `json:"peer"`
	ResourceID string              `json:"resourceId"`
	Name       string              `json:"name"`
	FQDN       string              `json:"fqdn"`
	LocalFQDN  string              `json:"localFqdn"`
	StaleSince *time.Time          `json:"staleSince,omitempty"`
	Endpoints  []model.Endpoint    `json:"endpoints"`
	Instances  []registry.Imported `json:"instances"`
	// SANs are the identities the owner's ingress may present for the
	// service; none is any of the owner's trust domain. Routes are, per
	// instance, the server name and the endpoints the egress gateway
	// reaches it by: what meshfed check --live tries.
	SANs   []string      `json:"sans,omitempty"`
	Routes []ImportRoute `json:"routes"`
	// Rejected is the NACK this agent sent for a later version of the
	// service; the version shown is the last one it took.
	Rejected *Rejection `json:"rejected,omitempty"`
}

// ImportRoute is how the egress gateway reaches one instance of an
// import at the owner's ingress.
type ImportRoute struct {
	Instance  string           `json:"instance"`
	Protocol  model.Protocol   `json:"protocol"`
	SNI       string           `json:"sni,omitempty"`
	Endpoints []model.Endpoint `json:"endpoints"`
}

// importRoutes are the routes of imp's instances, by instance id, each
// with the endpoints its selector picks, as the translation picks them.
func importRoutes(imp model.Import) []ImportRoute {
	out := []ImportRoute{}
	for _, inst := range imp.Service.Instances {
		r := ImportRoute{Instance: inst.ID, Protocol: inst.Protocol, SNI: inst.SNI, Endpoints: []model.Endpoint{}}
		for _, e := range imp.Service.Endpoints {
			if slices.ContainsFunc(inst.Selector, func(l string) bool { return slices.Contains(e.Labels, l) }) {
				r.Endpoints = append(r.Endpoints, e)
			}
		}
		// An instance whose selector picks none is reached on them all.
		if len(r.Endpoints) == 0 {
			r.Endpoints = append(r.Endpoints, imp.Service.Endpoints...)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b ImportRoute) int { return strings.Compare(a.Instance, b.Instance) })
	return out
}

// ExportView is one exported service and what its consumers answered.
type ExportView struct {
	model.Export
	Deliveries map[string]Delivery `json:"deliveries,omitempty"`
}

// Status gathers the agent's state.
func (a *Agent) Status(context.Context) (any, error) {
	now := time.Now()
	// One read of the SVIDs for the table and the problems: a refusal
	// between two reads showed in one and not the other.
	svids := a.creds.all.SVIDStates()
	s := Status{Mesh: a.cfg.TrustDomain, Ready: a.Ready() == nil, Peers: []PeerStatus{}, Gateways: a.gatewayViews(), Refused: a.Peers.Refused(), Sinks: a.Sinks(), ExportSource: a.ExportSource(),
		SVIDs: a.creds.svidStatus(now, svids), Bundles: a.creds.bundles.States(), Held: a.bundleHolds(), Degraded: a.degraded(svids)}
	for _, ps := range a.Peers.Status() {
		v := PeerStatus{Status: ps}
		for name, d := range a.Catalog.Deliveries(ps.Name) {
			v.Deliveries = append(v.Deliveries, delivery(name, d))
		}
		slices.SortFunc(v.Deliveries, func(a, b Delivery) int { return strings.Compare(a.Service, b.Service) })
		for _, r := range a.Catalog.Rejections(ps.Name) {
			v.Rejected = append(v.Rejected, rejection(r))
		}
		s.Peers = append(s.Peers, v)
	}
	return s, nil
}

func rejection(r catalog.Rejection) Rejection {
	return Rejection{ResourceID: r.ResourceID, Code: r.Code.String(), Message: r.Message, At: r.At}
}

// Imports lists what the peers publish to this mesh.
func (a *Agent) Imports(context.Context) (any, error) {
	served := a.published.instances()
	out := []ImportView{}
	for _, imp := range a.Catalog.Imports() {
		v := ImportView{
			Peer: imp.Peer, ResourceID: imp.ResourceID, Name: imp.Service.Name, FQDN: imp.Service.FQDN,
			LocalFQDN: imp.LocalFQDN, Endpoints: imp.Service.Endpoints,
			Instances: served[model.ImportKey(imp)],
			SANs:      imp.Service.SANs, Routes: importRoutes(imp),
		}
		if v.Instances == nil {
			v.Instances = []registry.Imported{}
		}
		if !imp.StaleSince.IsZero() {
			t := imp.StaleSince
			v.StaleSince = &t
		}
		if r, ok := a.Catalog.Rejection(imp.Peer, imp.ResourceID); ok {
			rj := rejection(r)
			v.Rejected = &rj
		}
		out = append(out, v)
	}
	return out, nil
}

// Exports lists the local services offered to peers. Each consumer's
// answers are copied out of the catalog once, not once per export: that
// made the answer quadratic (20 s at 10,000 exports).
func (a *Agent) Exports(context.Context) (any, error) {
	out := []ExportView{}
	answers := map[string]map[string]catalog.Delivery{}
	for _, e := range a.Catalog.Exports() {
		v := ExportView{Export: e}
		for _, p := range e.Consumers {
			byName, ok := answers[p]
			if !ok {
				byName = a.Catalog.Deliveries(p)
				answers[p] = byName
			}
			if d, ok := byName[e.Name]; ok {
				if v.Deliveries == nil {
					v.Deliveries = map[string]Delivery{}
				}
				v.Deliveries[p] = delivery(e.Name, d)
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func delivery(name string, d catalog.Delivery) Delivery {
	out := Delivery{Service: name, Acked: d.Acked, Message: d.Message, At: d.At}
	if !d.Acked {
		out.Code = d.Code.String()
	}
	return out
}

// Problems are what makes meshfed status exit with 2, one a line, in the
// status's order: the agent not ready; a peer failing (in backoff after a
// failed stream, refused, or failed for good); an SVID or trust bundle
// refused or failing, an SVID in use expired or within
// identity.expiryWarning, imports held on a peer's bundle (all the
// degraded reasons of /readyz); a registry that cannot be written to or a
// source of exports that cannot be read; a gateway role without a
// connected gateway, or a gateway NACKing or STALE (gatewayProblems). A
// peer that dials this agent and has not yet connected (waiting) is not
// failing.
func (s Status) Problems() []string {
	var out []string
	if !s.Ready {
		out = append(out, "the agent is not ready")
	}
	for _, p := range s.Peers {
		if p.State == peer.Backoff || p.State == peer.Refused || p.State == peer.Failed {
			msg := fmt.Sprintf("peer %s is failing (%s", p.Name, p.State)
			if p.Refusal != nil {
				msg += ": " + string(p.Refusal.Kind)
			}
			msg += ")"
			if p.LastError != "" {
				msg += ": " + p.LastError
			}
			out = append(out, msg)
		}
	}
	out = append(out, s.gatewayProblems(time.Now())...)
	for _, v := range s.SVIDs {
		if v.Expiring && v.NotAfter.After(time.Now()) {
			out = append(out, fmt.Sprintf("identity.%s: the SVID in use (serial %s) expires at %s, within identity.expiryWarning; write a new one",
				v.Role, v.Serial, v.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	regs := s.Sinks
	if s.ExportSource != nil {
		regs = append(regs, *s.ExportSource)
	}
	skip := map[string]bool{}
	for _, k := range regs {
		skip[k.Name] = true
		if !k.Healthy && !k.FailingSince.IsZero() {
			out = append(out, fmt.Sprintf("registry %s is failing since %s: %s", k.Name, k.FailingSince.UTC().Format(time.RFC3339), k.LastError))
		}
	}
	for _, d := range s.Degraded {
		// The registries' reasons are told above, as they always were.
		name, _, _ := strings.Cut(d, ":")
		if !skip[name] {
			out = append(out, d)
		}
	}
	return out
}
