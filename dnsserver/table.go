package dnsserver

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Record is what one imported service name resolves to.
type Record struct {
	// Name is an import's local name or alias: a domain name, matched
	// without regard to case or a trailing dot.
	Name string
	// Addresses are the egress gateway's: A records for IPv4, AAAA for IPv6.
	Addresses []netip.Addr
	// SRV has one entry per service port.
	SRV []SRV
}

// SRV is one service port, served as _<Service>._<Proto>.<Name> (RFC 2782)
// and among the answers to an SRV query for the bare name.
type SRV struct {
	// Service is the port's name. Empty: the port appears only in the bare
	// name's answer, having no name to be asked by.
	Service string
	// Proto defaults to tcp.
	Proto string
	Port  uint32
	// Target defaults to the record's Name.
	Target string
}

// table is immutable once built, so that queries read it without locks.
// Keys are canonical names (lowercase, with the trailing dot).
type table map[string]*node

// node holds the answers for one name. Owner names are canonical; answer
// copies take the question's spelling.
type node struct {
	a, aaaa, srv []dns.RR
	// glue is the addresses of SRV targets that the table holds, so a client
	// need not ask again.
	glue []dns.RR
}

// build makes the table. A record that cannot be served is skipped and
// logged rather than failing the whole table: one bad import must not take
// down the names of the others.
func build(records []Record, ttl uint32, log *zap.Logger) table {
	t := table{}
	targets := map[*node][]string{}
	for _, r := range records {
		name, ok := canonical(r.Name)
		if !ok {
			log.Warn("skipping a DNS record with an invalid name", zap.String("name", r.Name))
			continue
		}
		if _, dup := t[name]; dup {
			log.Warn("skipping a DNS record whose name is already served", zap.String("name", r.Name))
			continue
		}
		n := &node{}
		t[name] = n
		for _, a := range r.Addresses {
			a = a.Unmap()
			hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: ttl}
			switch {
			case a.Is4():
				hdr.Rrtype = dns.TypeA
				n.a = append(n.a, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6():
				hdr.Rrtype = dns.TypeAAAA
				n.aaaa = append(n.aaaa, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		for _, s := range r.SRV {
			rr, owner, ok := srvRR(name, s, ttl)
			if !ok {
				log.Warn("skipping a DNS SRV record that cannot be served", zap.String("name", r.Name), zap.String("service", s.Service), zap.String("proto", s.Proto), zap.String("target", s.Target), zap.Uint32("port", s.Port))
				continue
			}
			n.srv = append(n.srv, rr)
			targets[n] = append(targets[n], rr.Target)
			if owner == "" {
				continue
			}
			if _, dup := t[owner]; dup {
				log.Warn("skipping a DNS SRV record whose name is already served", zap.String("name", owner))
				continue
			}
			one := *rr
			one.Hdr.Name = owner
			sn := &node{srv: []dns.RR{&one}}
			t[owner] = sn
			targets[sn] = []string{rr.Target}
		}
	}
	// Glue comes second: a target may be a record listed later.
	for n, names := range targets {
		seen := map[string]bool{}
		for _, target := range names {
			if tn := t[target]; tn != nil && !seen[target] {
				seen[target] = true
				n.glue = append(append(n.glue, tn.a...), tn.aaaa...)
			}
		}
	}
	return t
}

// srvRR returns the SRV record of one port and the _service._proto owner
// name it is also served at ("" when the port has no name).
func srvRR(name string, s SRV, ttl uint32) (*dns.SRV, string, bool) {
	if s.Port == 0 || s.Port > 65535 {
		return nil, "", false
	}
	proto := strings.ToLower(s.Proto)
	if proto == "" {
		proto = "tcp"
	}
	target := name
	if s.Target != "" {
		var ok bool
		if target, ok = canonical(s.Target); !ok {
			return nil, "", false
		}
	}
	rr := &dns.SRV{
		Hdr:    dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
		Port:   uint16(s.Port),
		Target: target,
	}
	if strings.Contains(s.Service, ".") || strings.Contains(proto, ".") {
		return nil, "", false
	}
	if s.Service == "" {
		return rr, "", true
	}
	owner, ok := canonical("_" + strings.ToLower(s.Service) + "._" + proto + "." + name)
	if !ok {
		return nil, "", false
	}
	return rr, owner, true
}

// canonical lowercases name and makes it fully qualified.
func canonical(name string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return "", false
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return "", false
	}
	return dns.CanonicalName(name), true
}

// lookup finds the node for a canonical name. owned reports a name we are
// authoritative for even without a node: _service._proto under one of our
// names, so that an unknown port is NXDOMAIN instead of being forwarded.
func (t table) lookup(name string) (n *node, owned bool) {
	if n := t[name]; n != nil {
		return n, true
	}
	labels := dns.SplitDomainName(name)
	if len(labels) > 2 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_") {
		if t[strings.Join(labels[2:], ".")+"."] != nil {
			return nil, true
		}
	}
	return nil, false
}

// answer returns the records of type qtype and their glue.
func (n *node) answer(qtype uint16) (answer, extra []dns.RR) {
	switch qtype {
	case dns.TypeA:
		return n.a, nil
	case dns.TypeAAAA:
		return n.aaaa, nil
	case dns.TypeSRV:
		return n.srv, n.glue
	case dns.TypeANY:
		return append(append(append([]dns.RR(nil), n.a...), n.aaaa...), n.srv...), nil
	}
	return nil, nil
}
