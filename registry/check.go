package registry

import (
	"fmt"

	"net/netip"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/hostname"
	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
)

func fieldErr(path, format string, args ...any) error {
	return model.FieldErrorf(path, format, args...)
}

// ProtocolList is model.Protocols as error messages list them.
var ProtocolList = func() string {
	s := make([]string, len(model.Protocols))
	for i, p := range model.Protocols {
		s[i] = string(p)
	}
	return strings.Join(s, " ")
}()

// CheckExport returns the first field of e that a peer would refuse or that
// the ingress gateway could not serve, as a *model.FieldError; nil if none. Every
// source checks what it hands on with it, so that a bad entry stops at the
// edge it came in by. Defaults (mode, SNI) must already be set.
func CheckExport(e *model.Export) error {
	switch {
	case e.Name == "":
		return fieldErr("name", "required")
	case !IsLabel(e.Name):
		return fieldErr("name", "%s is not a DNS label (lowercase letters, digits and '-', at most 63)", untrusted.Quote(e.Name))
	case e.FQDN == "":
		return fieldErr("fqdn", "required")
	}
	if why := hostname.Problem(e.FQDN, hostname.FQDN); why != "" {
		return fieldErr("fqdn", "%s is not a lowercase DNS name (%s)", untrusted.Quote(e.FQDN), why)
	}
	if err := checkMode(e); err != nil {
		return err
	}
	if len(e.Consumers) == 0 {
		return fieldErr("consumers", "required: at least one peer")
	}
	for i, c := range e.Consumers {
		if c == "" {
			return fieldErr(fmt.Sprintf("consumers[%d]", i), "empty")
		}
		for j := range i {
			if e.Consumers[j] == c {
				return fieldErr(fmt.Sprintf("consumers[%d]", i), "%s is listed twice", untrusted.Quote(c))
			}
		}
	}
	for i, t := range e.Tags {
		if t == "" {
			return fieldErr(fmt.Sprintf("tags[%d]", i), "empty")
		}
	}
	if _, ok := e.Labels[""]; ok {
		return fieldErr("labels", "empty key")
	}
	if len(e.Ports) == 0 {
		return fieldErr("ports", "required: at least one port")
	}
	for i := range e.Ports {
		if err := checkPort(e.Ports, i); err != nil {
			return err
		}
	}
	return nil
}

// checkPort checks ports[i], and that it shares no name, port or SNI with
// an earlier port: the ingress would have two routes for one name.
func checkPort(ports []model.ExportPort, i int) error {
	p := &ports[i]
	at := fmt.Sprintf("ports[%d]", i)
	switch {
	case p.Name == "":
		return fieldErr(at+".name", "required")
	case !IsLabel(p.Name):
		return fieldErr(at+".name", "%s is not a DNS label (lowercase letters, digits and '-', at most 63)", untrusted.Quote(p.Name))
	case p.Port == 0 || p.Port > 65535:
		return fieldErr(at+".port", "%d is not a port 1..65535", p.Port)
	case p.Protocol == "":
		return fieldErr(at+".protocol", "required")
	case !p.Protocol.Valid():
		return fieldErr(at+".protocol", "%s is not one of %s", untrusted.Quote(string(p.Protocol)), ProtocolList)
	case p.SNI == "":
		return fieldErr(at+".sni", "required")
	}
	if why := hostname.Problem(p.SNI, hostname.SNI); why != "" {
		return fieldErr(at+".sni", "%s is not a host name (%s)", untrusted.Quote(p.SNI), why)
	}
	// It goes into an SNI and a SPIFFE ID, as Consul's service names do.
	if p.ConsulService != "" && !IsLabel(p.ConsulService) {
		return fieldErr(at+".consulService", "%s is not a Consul service name (a DNS label)", untrusted.Quote(p.ConsulService))
	}
	for j := range i {
		q := &ports[j]
		switch {
		case q.Name == p.Name:
			return fieldErr(at+".name", "%s is used by ports[%d] too", untrusted.Quote(p.Name), j)
		case q.Port == p.Port:
			return fieldErr(at+".port", "%d is used by ports[%d] too", p.Port, j)
		case q.SNI == p.SNI:
			return fieldErr(at+".sni", "%s is used by ports[%d] too", untrusted.Quote(p.SNI), j)
		}
	}
	if len(p.Endpoints) == 0 {
		return fieldErr(at+".endpoints", "required: at least one endpoint")
	}
	for j, ep := range p.Endpoints {
		eat := fmt.Sprintf("%s.endpoints[%d]", at, j)
		if ep.Address == "" {
			return fieldErr(eat+".address", "required")
		}
		if why := CheckAddress(ep.Address); why != "" {
			return fieldErr(eat+".address", "%s %s", untrusted.Quote(ep.Address), why)
		}
		if ep.Port == 0 || ep.Port > 65535 {
			return fieldErr(eat+".port", "%d is not a port 1..65535", ep.Port)
		}
	}
	return nil
}

// CheckAddress returns why s is not an IP address or DNS name, or "". Local
// endpoints may be loopback or private: they are this mesh's own.
func CheckAddress(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "has an IPv6 zone"
		}
		return ""
	}
	if why := hostname.Problem(s, hostname.LocalAddress); why != "" {
		return "is neither an IP address nor a DNS name (" + why + ")"
	}
	return ""
}

// IsLabel reports whether s is a lowercase RFC 1123 DNS label: the form of
// service and port names, which end up in DNS names and resource ids.
func IsLabel(s string) bool {
	return len(s) <= 63 && !strings.Contains(s, ".") && hostname.Problem(s, hostname.Label) == ""
}

// IsFQDN reports whether s is a lowercase DNS name of at least two labels,
// without wildcard: what peers accept as a service fqdn.
func IsFQDN(s string) bool { return hostname.Problem(s, hostname.FQDN) == "" }

// checkMode refuses a passthrough export whose backend does not say which
// SPIFFE IDs it presents: the ingress gateway forwards the consumers' TLS
// untouched there, so nobody would authenticate them unless the backend
// terminates SPIFFE mutual TLS itself, and peers must know what to verify.
func checkMode(e *model.Export) error {
	switch e.Mode {
	case model.Terminate:
		if len(e.BackendIDs) > 0 {
			return fieldErr("backendSpiffeIds", "only for mode passthrough: in mode terminate the ingress gateway authenticates the consumers and presents its own SVID")
		}
		return nil
	case model.Passthrough:
		if len(e.BackendIDs) == 0 {
			return fieldErr("backendSpiffeIds", "required with mode passthrough: the SPIFFE IDs the service presents, as it terminates the consumers' mutual TLS itself")
		}
		for i, id := range e.BackendIDs {
			if _, err := spiffeid.FromString(id); err != nil {
				return fieldErr(fmt.Sprintf("backendSpiffeIds[%d]", i), "%s: %v", untrusted.Quote(id), err)
			}
		}
		return nil
	}
	return fieldErr("mode", "%s is not one of terminate passthrough", untrusted.Quote(string(e.Mode)))
}
