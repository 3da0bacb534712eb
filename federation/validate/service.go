package validate

import (
	"maps"
	"slices"
	"sort"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/hostname"
	"github.com/meshfed/meshfed/model"
)

// Service checks a FederatedService that peer p published and returns it as
// a model.Service. It is the only way a peer's service enters the model, so
// everything downstream (snapshot, registries) may trust what it returns.
// The first problem found is returned as an InvalidArgument status naming
// the field path, e.g. `endpoints[1].port: 70000 is out of range 1-65535`.
//
// Normalisation, so that equal services compare equal downstream:
// protocols are upper-cased (Hamlet spells them upper case, but accepting
// any case costs nothing and interoperates best); endpoint IPs take their
// canonical form and IPv4-mapped IPv6 becomes IPv4; the fqdn, endpoint DNS
// names, the SNI and the HOSTNAME metadata are lower-cased, since DNS names
// and SNI are case-insensitive and some publishers use upper case: only
// what stays invalid once lower-cased is refused. No default SNI is filled
// in: that is the consumer's decision, made where clusters are built.
// Empty repeated fields and maps become nil. The result shares no slice or
// map with fs.
func Service(fs *typespb.FederatedService, p Policy) (model.Service, error) {
	if fs == nil {
		return model.Service{}, invalid("resource: is missing")
	}
	l := p.Limits.withDefaults()
	if err := serviceName(fs.GetName(), l.NameLen); err != nil {
		return model.Service{}, err
	}
	fqdn := lowerASCII(fs.GetFqdn())
	if why := hostname.Problem(fqdn, hostname.FQDN); why != "" {
		return model.Service{}, invalid("fqdn: %s is not a DNS name (%s)", quote(fs.GetFqdn()), why)
	}
	if err := maxLen("description", fs.GetDescription(), l.DescriptionLen); err != nil {
		return model.Service{}, err
	}
	if err := stringList("tags", fs.GetTags(), l.Tags, l.ItemLen); err != nil {
		return model.Service{}, err
	}
	if err := stringMap("labels", fs.GetLabels(), l.Labels, l.ItemLen, l.ValueLen); err != nil {
		return model.Service{}, err
	}
	if err := sans(fs.GetSans(), &p, l); err != nil {
		return model.Service{}, err
	}
	eps, err := endpoints(fs.GetEndpoints(), &p, l)
	if err != nil {
		return model.Service{}, err
	}
	ins, err := instances(fs.GetInstances(), l)
	if err != nil {
		return model.Service{}, err
	}
	if err := defaultSNIs(ins, fqdn); err != nil {
		return model.Service{}, err
	}
	return model.Service{
		Name:        fs.GetName(),
		FQDN:        fqdn,
		Description: fs.GetDescription(),
		Tags:        clone(fs.GetTags()),
		Labels:      cloneMap(fs.GetLabels()),
		Endpoints:   eps,
		SANs:        clone(fs.GetSans()),
		Instances:   ins,
	}, nil
}

// serviceName checks the service name. It is free text for a human, but it
// ends up in logs, registries and resource ids, so control characters and
// invalid UTF-8 are refused.
func serviceName(name string, max int) error {
	if name == "" {
		return invalid("name: is empty")
	}
	if err := maxLen("name", name, max); err != nil {
		return err
	}
	if !printable(name) {
		return invalid("name: %s contains a control character or invalid UTF-8", quote(name))
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || unicode.IsControl(r) {
			return false
		}
		i += n
	}
	return true
}

func sans(list []string, p *Policy, l Limits) error {
	if len(list) > l.SANs {
		return tooMany("sans", len(list), l.SANs)
	}
	for i, s := range list {
		if len(s) > l.SANLen {
			return invalid("sans[%d]: %s is longer than %d bytes", i, quote(s), l.SANLen)
		}
		id, err := spiffeid.FromString(s)
		if err != nil {
			return invalid("sans[%d]: %s is not a SPIFFE ID: %v", i, quote(s), err)
		}
		if !p.sanDomainAllowed(id.TrustDomain()) {
			return invalid("sans[%d]: %s is in trust domain %q, which this peer may not name", i, quote(s), id.TrustDomain().Name())
		}
	}
	return nil
}

func endpoints(list []*typespb.FederatedService_Endpoint, p *Policy, l Limits) ([]model.Endpoint, error) {
	switch {
	case len(list) == 0:
		return nil, invalid("endpoints: none given; a service needs at least one")
	case len(list) > l.Endpoints:
		return nil, tooMany("endpoints", len(list), l.Endpoints)
	}
	out := make([]model.Endpoint, len(list))
	for i, e := range list {
		addr, why := address(e.GetAddress(), p)
		if why != "" {
			return nil, invalid("endpoints[%d].address: %s %s", i, quote(e.GetAddress()), why)
		}
		if port := e.GetPort(); port == 0 || port > 65535 {
			return nil, invalid("endpoints[%d].port: %d is out of range 1-65535", i, port)
		}
		if len(e.GetLabels()) > l.EndpointLabels {
			return nil, invalid("endpoints[%d].labels: %d entries exceed the limit of %d", i, len(e.GetLabels()), l.EndpointLabels)
		}
		for j, s := range e.GetLabels() {
			if len(s) > l.ItemLen {
				return nil, invalid("endpoints[%d].labels[%d]: %s is longer than %d bytes", i, j, quote(s), l.ItemLen)
			}
		}
		if d := e.GetDescription(); len(d) > l.DescriptionLen {
			return nil, invalid("endpoints[%d].description: %s is longer than %d bytes", i, quote(d), l.DescriptionLen)
		}
		out[i] = model.Endpoint{Address: addr, Port: e.GetPort(), Labels: clone(e.GetLabels())}
	}
	return out, nil
}

func maxLen(field, v string, max int) error {
	if len(v) > max {
		return invalid("%s: %s is longer than %d bytes", field, quote(v), max)
	}
	return nil
}

func tooMany(field string, n, max int) error {
	return invalid("%s: %d entries exceed the limit of %d", field, n, max)
}

func stringList(field string, list []string, maxN, maxLen int) error {
	if len(list) > maxN {
		return tooMany(field, len(list), maxN)
	}
	for i, s := range list {
		if len(s) > maxLen {
			return invalid("%s[%d]: %s is longer than %d bytes", field, i, quote(s), maxLen)
		}
	}
	return nil
}

// stringMap checks the size of a map of free text.
func stringMap(field string, m map[string]string, maxN, maxKey, maxValue int) error {
	if len(m) > maxN {
		return tooMany(field, len(m), maxN)
	}
	return firstInOrder(m, func(k, v string) error {
		if len(k) > maxKey {
			return invalid("%s: key %s is longer than %d bytes", field, quote(k), maxKey)
		}
		if len(v) > maxValue {
			return invalid("%s[%s]: %s is longer than %d bytes", field, quote(k), quote(v), maxValue)
		}
		return nil
	})
}

// firstInOrder runs check on every entry of m and returns the error of the
// smallest failing key. Map order is random, and a peer that sends the same
// bad service twice should get the same NACK twice; sorting is only paid
// for when something failed.
func firstInOrder(m map[string]string, check func(k, v string) error) error {
	failed := false
	for k, v := range m {
		if check(k, v) != nil {
			failed = true
			break
		}
	}
	if !failed {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := check(k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

func clone(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
