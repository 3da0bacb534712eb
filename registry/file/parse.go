package file

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
)

// The file's shape, from which registry.schema.json is generated (the
// field comments are its descriptions). Numbers are *int so that a missing
// port is told apart from port 0, and strings are checked after decoding,
// where the message can name the allowed values.
type (
	// Document is a registry file: the services this mesh exports.
	Document struct {
		// Services are the exports. None, or an empty file, withdraws
		// every export.
		Services []Service `yaml:"services"`
	}
	// Service is one exported service.
	Service struct {
		// Name is the name peers see: a DNS label, unique in the file.
		Name string `yaml:"name" jsonschema:"required"`
		// FQDN is the service's lowercase DNS name, unique in the file; no
		// wildcard.
		FQDN string `yaml:"fqdn" jsonschema:"required"`
		// Mode is terminate (the default: the ingress gateway ends the
		// consumer's mutual TLS and proxies to the endpoints) or
		// passthrough (the service ends it itself; the ingress routes the
		// raw stream by SNI).
		Mode string `yaml:"mode" jsonschema:"enum=terminate,enum=passthrough"`
		// BackendIDs are the SPIFFE IDs the service presents, which peers
		// are told to verify: required with mode passthrough, and only
		// then allowed.
		BackendIDs []string `yaml:"backendSpiffeIds"`
		// Consumers are the peers (peers[].name) allowed to import the
		// service; at least one.
		Consumers []string `yaml:"consumers" jsonschema:"required,minItems=1"`
		// Description is sent to peers.
		Description string `yaml:"description"`
		// Tags are sent to peers.
		Tags []string `yaml:"tags"`
		// Labels are sent to peers.
		Labels map[string]string `yaml:"labels"`
		// Ports are the service's ports; at least one.
		Ports []Port `yaml:"ports" jsonschema:"required,minItems=1"`
	}
	// Port is one port of an exported service.
	Port struct {
		// Name is a DNS label, unique within the service.
		Name string `yaml:"name" jsonschema:"required"`
		// Port is the port the service is known by, unique within the
		// service.
		Port *int `yaml:"port" jsonschema:"required,minimum=1,maximum=65535"`
		// Protocol is what the port speaks.
		Protocol string `yaml:"protocol" jsonschema:"required,enum=HTTP,enum=HTTPS,enum=GRPC,enum=HTTP2,enum=MONGO,enum=TCP,enum=TLS,enum=MTLS"`
		// SNI is the server name consumers reach the port by; default
		// outbound_.<port>_._.<fqdn>. Unique across the file.
		SNI string `yaml:"sni"`
		// Endpoints are where the ingress gateway sends the port's
		// traffic; at least one.
		Endpoints []Endpoint `yaml:"endpoints" jsonschema:"required,minItems=1"`
		// ConsulService names the Consul service whose Connect sidecars
		// the endpoints are: the ingress speaks Consul's mTLS to them.
		ConsulService string `yaml:"consulService"`
	}
	// Endpoint is one local instance of a port.
	Endpoint struct {
		// Address is an IP address or a DNS name.
		Address string `yaml:"address" jsonschema:"required"`
		// Port is the instance's port.
		Port *int `yaml:"port" jsonschema:"required,minimum=1,maximum=65535"`
	}
)

// Parse reads a registry file's content; name is what errors call the file.
// The exports come sorted by name, with every default set.
//
// The document is parsed once, its aliases bounded before anything expands
// them (untrusted.ParseYAML), and decoded from that tree. The index of
// field paths that messages name is built only for a message: it costs
// more than the tree itself.
func Parse(b []byte, name string) ([]model.Export, error) {
	root, err := untrusted.ParseYAML(b)
	if err != nil {
		return nil, syntaxError(name, err)
	}
	if root.Kind == 0 {
		return []model.Export{}, nil
	}
	if bad := firstShapeProblem(root, reflect.TypeFor[Document]()); bad != nil {
		return nil, newIndex(root).shapeError(name, bad)
	}
	var doc Document
	if err := root.Decode(&doc); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			return nil, newIndex(root).decodeError(name, te.Errors[0])
		}
		return nil, syntaxError(name, err)
	}
	out, err := doc.exports()
	if err != nil {
		var fe *model.FieldError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("%s:%d: %w", name, newIndex(root).line(fe.Path), err)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// exports converts and checks the document; errors are *model.FieldError
// with the path from the document's root.
func (d *Document) exports() ([]model.Export, error) {
	out := make([]model.Export, 0, len(d.Services))
	names := map[string]int{}
	fqdns := map[string]int{}
	snis := map[string]string{}
	for i, s := range d.Services {
		at := fmt.Sprintf("services[%d]", i)
		e, err := s.export(at)
		if err != nil {
			return nil, err
		}
		if err := registry.CheckExport(&e); err != nil {
			var fe *model.FieldError
			if errors.As(err, &fe) {
				return nil, fe.Under(at)
			}
			return nil, err
		}
		if j, ok := names[e.Name]; ok {
			return nil, &model.FieldError{Path: at + ".name", Msg: fmt.Sprintf("%s is used by services[%d] too", untrusted.Quote(e.Name), j)}
		}
		if j, ok := fqdns[e.FQDN]; ok {
			return nil, &model.FieldError{Path: at + ".fqdn", Msg: fmt.Sprintf("%s is used by services[%d] too", untrusted.Quote(e.FQDN), j)}
		}
		names[e.Name], fqdns[e.FQDN] = i, i
		// The ingress routes on SNI across every service, so an SNI set by
		// hand must not take another service's.
		for j, p := range e.Ports {
			pat := fmt.Sprintf("%s.ports[%d]", at, j)
			if other, ok := snis[p.SNI]; ok {
				return nil, &model.FieldError{Path: pat + ".sni", Msg: fmt.Sprintf("%s is used by %s too", untrusted.Quote(p.SNI), other)}
			}
			snis[p.SNI] = pat
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b model.Export) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// export converts one service, setting the defaults.
func (s *Service) export(at string) (model.Export, error) {
	e := model.Export{
		Name:        s.Name,
		FQDN:        s.FQDN,
		Description: s.Description,
		Tags:        s.Tags,
		Labels:      s.Labels,
		Mode:        model.IngressMode(s.Mode),
		BackendIDs:  s.BackendIDs,
		Consumers:   s.Consumers,
	}
	if e.Mode == "" {
		e.Mode = model.Terminate
	}
	for i, p := range s.Ports {
		pat := fmt.Sprintf("%s.ports[%d]", at, i)
		n, err := portNumber(p.Port, pat+".port")
		if err != nil {
			return e, err
		}
		ep := model.ExportPort{Name: p.Name, Port: n, Protocol: model.Protocol(p.Protocol), SNI: p.SNI, ConsulService: p.ConsulService}
		if ep.SNI == "" {
			ep.SNI = model.DefaultSNI(n, s.FQDN)
		}
		for j, a := range p.Endpoints {
			n, err := portNumber(a.Port, fmt.Sprintf("%s.endpoints[%d].port", pat, j))
			if err != nil {
				return e, err
			}
			ep.Endpoints = append(ep.Endpoints, model.LocalEndpoint{Address: a.Address, Port: n})
		}
		e.Ports = append(e.Ports, ep)
	}
	return e, nil
}

func portNumber(p *int, path string) (uint32, error) {
	switch {
	case p == nil:
		return 0, &model.FieldError{Path: path, Msg: "required"}
	case *p < 1 || *p > 65535:
		return 0, &model.FieldError{Path: path, Msg: fmt.Sprintf("%d is not a port 1..65535", *p)}
	}
	return uint32(*p), nil
}
