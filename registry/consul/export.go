package consul

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
)

// The service meta keys an operator sets on the instances to export.
const (
	MetaProtocol  = "meshfed-protocol"  // HTTP, GRPC, TCP, ...; default TCP
	MetaPortName  = "meshfed-port-name" // the export port's name; default "default"
	MetaConsumers = "meshfed-consumers" // a,b: overrides export.consumers
	// MetaBackendIDs are the SPIFFE IDs (a,b) the service presents, for
	// export.mode passthrough.
	MetaBackendIDs = "meshfed-backend-spiffe-ids"
)

// The tag on every import the sink registers, so that the source leaves
// them alone when it lists candidates.
const importTag = "meshfed-imported"

// selection decides which services and instances are exported.
type selection struct {
	names             map[string]bool
	tag               string
	metaKey, metaWant string
}

func newSelection(e *ExportConfig) selection {
	s := selection{names: map[string]bool{}, tag: e.Tag}
	for _, n := range e.Services {
		s.names[n] = true
	}
	if e.Meta != "" {
		s.metaKey, s.metaWant, _ = strings.Cut(e.Meta, "=")
	}
	return s
}

// candidate says whether a service of the catalog may have instances to
// export: the catalog lists names with the union of their tags, but not
// their meta, so a meta selection has to look at every service (a tag is
// the cheaper way to select in a large catalog).
func (s selection) candidate(name string, tags []string) bool {
	switch {
	case s.names[name]:
		return true
	case name == "consul" || slices.Contains(tags, importTag):
		return false
	case s.tag != "" && slices.Contains(tags, s.tag):
		return true
	}
	return s.metaKey != ""
}

// instance says whether one instance is exported. What meshfed registered
// itself never is: that would export imports back. Nor is a Connect proxy
// or a gateway, which carries its service's tags and meta when the agent
// registered it as a sidecar: a proxy is reached as the service it fronts.
func (s selection) instance(e *api.ServiceEntry) bool {
	switch {
	case e.Service == nil || e.Service.Kind != api.ServiceKindTypical:
		return false
	case e.Service.Meta[metaManaged] == "true" || (e.Node != nil && e.Node.Meta[metaManaged] == "true"):
		return false
	}
	return s.names[e.Service.Service] ||
		(s.tag != "" && slices.Contains(e.Service.Tags, s.tag)) ||
		(s.metaKey != "" && e.Service.Meta[s.metaKey] == s.metaWant)
}

// export builds a service's export from what was read of it (nil: not
// read). ok is false when no selected instance passes. A problem is why
// the instances give no valid export, or why some of them were left out;
// it is logged.
//
// A service with Connect proxies or native instances is reached with
// Consul's mutual TLS: its endpoints are its passing sidecars and native
// instances, and each port names the service (ConsulService). An instance
// behind no passing sidecar is left out, as one that fails its checks.
func (src *Source) export(name string, s *service) (e model.Export, ok bool, problem string) {
	if s == nil {
		return e, false, ""
	}
	var picked []*api.ServiceEntry
	for _, en := range s.entries {
		if src.sel.instance(en) {
			picked = append(picked, en)
		}
	}
	if len(picked) == 0 {
		return e, false, ""
	}
	// Sorted, so that which instance decides a conflict is stable.
	slices.SortFunc(picked, func(a, b *api.ServiceEntry) int {
		return cmp.Or(strings.Compare(a.Node.Node, b.Node.Node), strings.Compare(a.Service.ID, b.Service.ID))
	})
	e = model.Export{
		Name:      name,
		FQDN:      name + "." + src.cfg.DomainSuffix,
		Mode:      model.IngressMode(src.cfg.Mode),
		Consumers: src.cfg.Consumers,
	}
	connect := len(s.connect) > 0
	if connect && e.Mode == model.Passthrough {
		return e, false, fmt.Sprintf("export.mode %s: a Connect service is reached with Consul's mutual TLS, which the ingress originates in mode %s only", untrusted.Quote(string(e.Mode)), model.Terminate)
	}
	for _, en := range picked {
		if c, ok := en.Service.Meta[MetaConsumers]; ok {
			e.Consumers = splitList(c)
			break
		}
	}
	for _, en := range picked {
		if ids, ok := en.Service.Meta[MetaBackendIDs]; ok {
			e.BackendIDs = splitList(ids)
			break
		}
	}
	var behind map[instanceKey][]model.LocalEndpoint
	if connect {
		behind = connectEndpoints(picked, s.connect)
	}
	var problems []string
	byName := map[string]int{} // port name → index in e.Ports
	for _, en := range picked {
		proto := model.Protocol(strings.ToUpper(cmp.Or(en.Service.Meta[MetaProtocol], string(model.TCP))))
		if !proto.Valid() {
			problems = append(problems, fmt.Sprintf("instance %s: %s %s is not one of %s", untrusted.Quote(en.Service.ID), MetaProtocol, untrusted.Quote(en.Service.Meta[MetaProtocol]), registry.ProtocolList))
			continue
		}
		eps := []model.LocalEndpoint{{Address: cmp.Or(en.Service.Address, en.Node.Address), Port: uint32(en.Service.Port)}}
		if connect {
			if eps = behind[keyOf(en)]; len(eps) == 0 {
				continue
			}
		}
		portName := cmp.Or(en.Service.Meta[MetaPortName], "default")
		i, seen := byName[portName]
		if !seen {
			byName[portName] = len(e.Ports)
			e.Ports = append(e.Ports, model.ExportPort{Name: portName, Port: uint32(en.Service.Port), Protocol: proto})
			i = len(e.Ports) - 1
		}
		p := &e.Ports[i]
		if p.Protocol != proto {
			problems = append(problems, fmt.Sprintf("instance %s: protocol %s, but port %s is %s", untrusted.Quote(en.Service.ID), proto, untrusted.Quote(portName), p.Protocol))
			continue
		}
		// Instances normally share the port the service is known by;
		// when they differ, the lowest stands for all.
		p.Port = min(p.Port, uint32(en.Service.Port))
		for _, ep := range eps {
			if !slices.Contains(p.Endpoints, ep) {
				p.Endpoints = append(p.Endpoints, ep)
			}
		}
	}
	if connect && len(e.Ports) == 0 && len(problems) == 0 {
		return e, false, "" // no sidecar passes: as no instance passing
	}
	slices.SortFunc(e.Ports, func(a, b model.ExportPort) int { return strings.Compare(a.Name, b.Name) })
	for i := range e.Ports {
		p := &e.Ports[i]
		p.SNI = model.DefaultSNI(p.Port, e.FQDN)
		if connect {
			p.ConsulService = name
		}
		slices.SortFunc(p.Endpoints, func(a, b model.LocalEndpoint) int {
			return cmp.Or(strings.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
		})
	}
	if err := registry.CheckExport(&e); err != nil {
		return e, false, joinProblems(append(problems, err.Error()))
	}
	return e, true, joinProblems(problems)
}

// maxProblems is how many problems of one service are told: thousands of
// instances may share one, and the log line and the status would carry
// each.
const maxProblems = 3

// joinProblems words a service's problems, the first few and how many more.
func joinProblems(problems []string) string {
	if len(problems) > maxProblems {
		problems = append(problems[:maxProblems:maxProblems], fmt.Sprintf("and %d more", len(problems)-maxProblems))
	}
	return strings.Join(problems, "; ")
}

// splitList splits a,b into its trimmed, non-empty parts.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
