// Package wire converts between the model and Hamlet's FederatedService.
package wire

import (
	"sort"
	"strconv"
	"strings"

	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/model"
)

// TypeURL is the Any type URL of a FederatedService, and the resource_url of
// every Hamlet request and response that carries one.
const TypeURL = "type.googleapis.com/federation.types.v1alpha2.FederatedService"

// Reserved instance metadata keys, matched case-insensitively on receipt.
const (
	MetaSNI      = "SNI"
	MetaHostname = "HOSTNAME"
	MetaPort     = "PORT"
)

// FromModel is the FederatedService that carries s.
func FromModel(s model.Service) *typespb.FederatedService {
	fs := &typespb.FederatedService{
		Name:        s.Name,
		Description: s.Description,
		Tags:        s.Tags,
		Labels:      s.Labels,
		Fqdn:        s.FQDN,
		Sans:        s.SANs,
	}
	for _, e := range s.Endpoints {
		fs.Endpoints = append(fs.Endpoints, &typespb.FederatedService_Endpoint{Address: e.Address, Port: e.Port, Labels: e.Labels})
	}
	for _, in := range s.Instances {
		md := map[string]string{}
		if in.SNI != "" {
			md[MetaSNI] = in.SNI
		}
		if in.Hostname != "" {
			md[MetaHostname] = in.Hostname
		}
		if in.Port != 0 {
			md[MetaPort] = strconv.FormatUint(uint64(in.Port), 10)
		}
		fs.Instances = append(fs.Instances, &typespb.FederatedService_Instance{
			Id:               in.ID,
			Protocol:         string(in.Protocol),
			Metadata:         md,
			EndpointSelector: in.Selector,
		})
	}
	return fs
}

// Ingress is where this mesh accepts federated traffic: the addresses of its
// ingress gateway and the SPIFFE IDs consumers must see on it.
type Ingress struct {
	Endpoints []model.Endpoint
	SANs      []string
}

// IngressLabel labels every endpoint this agent publishes, and every
// instance selects it. The proto marks endpoint labels, endpoint_selector
// and instance id REQUIRED, so they are always sent, although every ingress
// endpoint serves every instance (it routes by SNI).
const IngressLabel = "ingress"

// Advertise is the service a peer sees for a local export: reachable at the
// ingress gateway, one instance per port, each with its SNI stated so that
// consumers of any vendor route on it.
func Advertise(e model.Export, in Ingress) model.Service {
	s := model.Service{
		Name:        e.Name,
		FQDN:        e.FQDN,
		Description: e.Description,
		Tags:        e.Tags,
		Labels:      e.Labels,
		SANs:        in.SANs,
	}
	if e.Mode == model.Passthrough {
		// The backend terminates the consumers' mTLS: its IDs are what
		// they see.
		s.SANs = e.BackendIDs
	}
	for _, ep := range in.Endpoints {
		ep.Labels = []string{IngressLabel}
		s.Endpoints = append(s.Endpoints, ep)
	}
	for _, p := range e.Ports {
		id := p.Name
		if id == "" {
			// Registries require port names; an export set another way
			// still gets the REQUIRED, unique instance id.
			id = strings.ToLower(string(p.Protocol)) + "-" + strconv.FormatUint(uint64(p.Port), 10)
		}
		s.Instances = append(s.Instances, model.Instance{ID: id, Protocol: p.Protocol, SNI: p.SNI, Port: p.Port, Selector: []string{IngressLabel}})
	}
	sort.Slice(s.Instances, func(i, j int) bool { return s.Instances[i].ID < s.Instances[j].ID })
	return s
}
