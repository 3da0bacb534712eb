package dnsserver

import (
	"net/netip"
	"strings"
	"sync"

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

// table holds the answers, by canonical owner name (lowercase, with the
// trailing dot). Queries read it under a read lock; Update changes only
// the names of the records it is given, so that a change costs what it
// touches, not the table's size.
type table struct {
	mu    sync.RWMutex
	nodes map[string]*node
	// owned are, by a record's canonical name, the owner names it put in
	// nodes: its own and those of its named ports.
	owned map[string][]string
}

// node holds the answers for one name. Owner names are canonical; answer
// copies take the question's spelling. A node never changes once in the
// table: an update replaces it.
type node struct {
	a, aaaa, srv []dns.RR
	// targets are the SRV targets, whose addresses the table holds, when
	// it does, are glue: a client need not ask again.
	targets []string
}

func newTable() *table {
	return &table{nodes: map[string]*node{}, owned: map[string][]string{}}
}

// update removes the records called remove and those of set, then adds
// set. A record that cannot be served is skipped and logged rather than
// failing the others: one bad import must not take down the names of the
// rest.
func (t *table) update(set []Record, remove []string, ttl uint32, log *zap.Logger) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range remove {
		if name, ok := canonical(r); ok {
			t.drop(name)
		}
	}
	for _, r := range set {
		if name, ok := canonical(r.Name); ok {
			t.drop(name)
		}
	}
	for _, r := range set {
		t.add(r, ttl, log)
	}
}

func (t *table) drop(name string) {
	for _, owner := range t.owned[name] {
		delete(t.nodes, owner)
	}
	delete(t.owned, name)
}

func (t *table) add(r Record, ttl uint32, log *zap.Logger) {
	name, ok := canonical(r.Name)
	if !ok {
		log.Warn("skipping a DNS record with an invalid name", zap.String("name", r.Name))
		return
	}
	if _, dup := t.nodes[name]; dup {
		log.Warn("skipping a DNS record whose name is already served", zap.String("name", r.Name))
		return
	}
	n := &node{}
	t.nodes[name] = n
	owned := []string{name}
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
		n.targets = append(n.targets, rr.Target)
		if owner == "" {
			continue
		}
		if _, dup := t.nodes[owner]; dup {
			log.Warn("skipping a DNS SRV record whose name is already served", zap.String("name", owner))
			continue
		}
		one := *rr
		one.Hdr.Name = owner
		t.nodes[owner] = &node{srv: []dns.RR{&one}, targets: []string{rr.Target}}
		owned = append(owned, owner)
	}
	t.owned[name] = owned
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

// answer returns the records of type qtype of a canonical name and their
// glue. owned reports a name we are authoritative for even without a
// node: _service._proto under one of our names, so that an unknown port
// is NXDOMAIN instead of being forwarded; found is false then.
func (t *table) answer(name string, qtype uint16) (answer, extra []dns.RR, owned, found bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := t.nodes[name]
	if n == nil {
		labels := dns.SplitDomainName(name)
		owned = len(labels) > 2 && strings.HasPrefix(labels[0], "_") && strings.HasPrefix(labels[1], "_") &&
			t.nodes[strings.Join(labels[2:], ".")+"."] != nil
		return nil, nil, owned, false
	}
	switch qtype {
	case dns.TypeA:
		return n.a, nil, true, true
	case dns.TypeAAAA:
		return n.aaaa, nil, true, true
	case dns.TypeSRV:
		seen := map[string]bool{}
		for _, target := range n.targets {
			if tn := t.nodes[target]; tn != nil && !seen[target] {
				seen[target] = true
				extra = append(append(extra, tn.a...), tn.aaaa...)
			}
		}
		return n.srv, extra, true, true
	case dns.TypeANY:
		return append(append(append([]dns.RR(nil), n.a...), n.aaaa...), n.srv...), nil, true, true
	}
	return nil, nil, true, true
}
