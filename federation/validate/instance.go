package validate

import (
	"sort"
	"strconv"
	"strings"

	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/hostname"
	"github.com/meshfed/meshfed/model"
)

// The reserved instance metadata keys, as Hamlet spells them; a peer may
// spell them in any case.
const (
	metaSNI      = "SNI"
	metaHostname = "HOSTNAME"
	metaPort     = "PORT"
)

func instances(list []*typespb.FederatedService_Instance, l Limits) ([]model.Instance, error) {
	switch {
	case len(list) == 0:
		return nil, invalid("instances: none given; a service needs at least one")
	case len(list) > l.Instances:
		return nil, tooMany("instances", len(list), l.Instances)
	}
	out := make([]model.Instance, len(list))
	for i, in := range list {
		id := in.GetId()
		// An empty id is accepted: the spec does not require one and a
		// service with a single instance needs none. It still must be
		// unique, since resource names are derived from it.
		if len(id) > l.NameLen {
			return nil, invalid("instances[%d].id: %s is longer than %d bytes", i, quote(id), l.NameLen)
		}
		// Quadratic, but over at most Limits.Instances short strings it
		// beats building a set, and allocates nothing.
		for j := range i {
			if list[j].GetId() == id {
				return nil, invalid("instances[%d].id: %s is also the id of instances[%d]", i, quote(id), j)
			}
		}
		proto, ok := protocol(in.GetProtocol())
		if !ok {
			return nil, invalid("instances[%d].protocol: %s is not one of HTTP HTTPS GRPC HTTP2 MONGO TCP TLS MTLS", i, quote(in.GetProtocol()))
		}
		sel := in.GetEndpointSelector()
		if len(sel) > l.Selector {
			return nil, invalid("instances[%d].endpoint_selector: %d entries exceed the limit of %d", i, len(sel), l.Selector)
		}
		for j, s := range sel {
			if len(s) > l.ItemLen {
				return nil, invalid("instances[%d].endpoint_selector[%d]: %s is longer than %d bytes", i, j, quote(s), l.ItemLen)
			}
		}
		if d := in.GetDescription(); len(d) > l.DescriptionLen {
			return nil, invalid("instances[%d].description: %s is longer than %d bytes", i, quote(d), l.DescriptionLen)
		}
		out[i] = model.Instance{ID: id, Protocol: proto, Selector: clone(sel)}
		if err := metadata(i, in.GetMetadata(), l, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// protocol returns the Protocol constant that s names in any case, so that
// no new string is allocated for it.
func protocol(s string) (model.Protocol, bool) {
	for _, p := range model.Protocols {
		if strings.EqualFold(s, string(p)) {
			return p, true
		}
	}
	return "", false
}

// metadata checks the metadata of instances[i] and fills the reserved keys
// into in.
func metadata(i int, md map[string]string, l Limits, in *model.Instance) error {
	if len(md) > l.Metadata {
		return invalid("instances[%d].metadata: %d entries exceed the limit of %d", i, len(md), l.Metadata)
	}
	m := metaPass{i: i, l: &l, in: in}
	for k, v := range md {
		if m.entry(k, v) != nil {
			// Map order is random; redo the pass in key order so that
			// the same bad input always earns the same message.
			return m.sorted(md)
		}
	}
	return nil
}

// metaPass is one pass over an instance's metadata. The reserved keys
// remember the spelling they were first seen in, to name both spellings when
// a second one folds to the same key.
type metaPass struct {
	i               int
	l               *Limits
	in              *model.Instance
	sni, host, port string
}

func (m *metaPass) sorted(md map[string]string) error {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	*m = metaPass{i: m.i, l: m.l, in: m.in}
	for _, k := range keys {
		if err := m.entry(k, md[k]); err != nil {
			return err
		}
	}
	return nil // not reached: the unsorted pass failed on one of these keys
}

func (m *metaPass) entry(k, v string) error {
	i := m.i
	switch {
	case strings.EqualFold(k, metaSNI):
		if err := m.once(&m.sni, k, metaSNI); err != nil {
			return err
		}
		sni := lowerASCII(v)
		if why := hostname.Problem(sni, hostname.SNI); why != "" {
			return invalid("instances[%d].metadata[%s]: %s is not a valid SNI host name (%s)", i, quote(k), quote(v), why)
		}
		m.in.SNI = sni
	case strings.EqualFold(k, metaHostname):
		if err := m.once(&m.host, k, metaHostname); err != nil {
			return err
		}
		if why := hostname.Problem(v, hostname.Hostname); why != "" {
			return invalid("instances[%d].metadata[%s]: %s is not a DNS name (%s)", i, quote(k), quote(v), why)
		}
		m.in.Hostname = strings.ToLower(v)
	case strings.EqualFold(k, metaPort):
		if err := m.once(&m.port, k, metaPort); err != nil {
			return err
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 || n > 65535 {
			return invalid("instances[%d].metadata[%s]: %s is not a port number 1-65535", i, quote(k), quote(v))
		}
		m.in.Port = uint32(n)
	default:
		if len(k) > m.l.ItemLen {
			return invalid("instances[%d].metadata: key %s is longer than %d bytes", i, quote(k), m.l.ItemLen)
		}
		if len(v) > m.l.ValueLen {
			return invalid("instances[%d].metadata[%s]: %s is longer than %d bytes", i, quote(k), quote(v), m.l.ValueLen)
		}
	}
	return nil
}

// once records that key k, spelling reserved key name, was seen, and fails
// when another spelling of it was seen before.
func (m *metaPass) once(seen *string, k, name string) error {
	if *seen != "" {
		a, b := *seen, k
		if b < a {
			a, b = b, a
		}
		return invalid("instances[%d].metadata: keys %s and %s both name %s", m.i, quote(a), quote(b), name)
	}
	*seen = k
	return nil
}

// maxSNILen is the longest server name Envoy sends or matches.
const maxSNILen = 255

// defaultSNIs gives each instance without an SNI the default one, derived
// from the fqdn: this is the edge where what peers send enters, and nothing
// past it applies the default again. An instance whose default is too long
// to be sent is refused here, with a reason the owner can act on, rather
// than as a cluster Envoy drops later.
func defaultSNIs(ins []model.Instance, fqdn string) error {
	for i := range ins {
		if ins[i].SNI != "" {
			continue
		}
		sni := model.DefaultSNI(ins[i].Port, fqdn)
		if len(sni) > maxSNILen {
			return invalid("instances[%d]: no SNI metadata, and the default %s is %d bytes, over the %d a TLS server name may have: state a shorter SNI", i, quote(sni[:40]+"..."), len(sni), maxSNILen)
		}
		ins[i].SNI = sni
	}
	return nil
}
