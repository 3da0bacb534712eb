package dnsserver

import (
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// ednsSize is the UDP payload size we offer, the DNS Flag Day 2020 value
// that avoids IP fragmentation, and the most we send over UDP whatever a
// client advertises: a UDP answer goes to an address nobody verified, so
// a larger one would make this server an amplifier of spoofed queries.
// A client that needs more asks again over TCP.
const ednsSize = 1232

// handler answers the queries of one transport; forwarding keeps the
// transport so that an upstream's truncated answer sends the client to TCP.
type handler struct {
	s   *Server
	net string // "udp" or "tcp"
}

func (h handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := h.reply(r)
	h.s.queries.WithLabelValues(dns.RcodeToString[m.Rcode]).Inc()
	if err := w.WriteMsg(m); err != nil {
		h.s.cfg.Log.Debug("writing a DNS answer", zap.String("net", h.net), zap.Error(err))
	}
}

func (h handler) reply(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg).SetReply(r)
	m.RecursionAvailable = len(h.s.cfg.Forward) > 0
	// The server's accept function already refuses what has no single
	// question; NOTIFY passes it and is not ours to handle.
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		return h.fit(r, m.SetRcode(r, dns.RcodeNotImplemented))
	}
	q := r.Question[0]
	var records, extra []dns.RR
	owned, found := false, false
	if q.Qclass == dns.ClassINET || q.Qclass == dns.ClassANY {
		records, extra, owned, found = h.s.table.answer(dns.CanonicalName(q.Name), q.Qtype)
	}
	switch {
	case owned:
		return h.fit(r, answer(m, q, records, extra, found))
	case len(h.s.cfg.Forward) > 0:
		return h.forward(r)
	default:
		return h.fit(r, m.SetRcode(r, dns.RcodeNameError))
	}
}

// answer fills m for a name we own with its records and their glue;
// found is false for an unknown port below one of our names.
func answer(m *dns.Msg, q dns.Question, records, extra []dns.RR, found bool) *dns.Msg {
	m.Authoritative = true
	if !found {
		m.Rcode = dns.RcodeNameError
		return m
	}
	for _, rr := range records {
		// The question's spelling, for resolvers that match it (0x20).
		rr = dns.Copy(rr)
		rr.Header().Name = q.Name
		m.Answer = append(m.Answer, rr)
	}
	for _, rr := range extra {
		m.Extra = append(m.Extra, dns.Copy(rr))
	}
	return m
}

// fit answers EDNS with EDNS, compresses m, and trims it to what the
// client can take over UDP: 512 bytes without EDNS, else its advertised
// size up to ednsSize, setting TC so that it asks again over TCP, where
// the answer is whole.
func (h handler) fit(r, m *dns.Msg) *dns.Msg {
	size := dns.MaxMsgSize
	if h.net == "udp" {
		size = dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), ednsSize)
		}
	}
	if r.IsEdns0() != nil {
		if opt := m.IsEdns0(); opt != nil {
			opt.SetUDPSize(ednsSize) // an upstream's, forwarded
		} else {
			m.SetEdns0(ednsSize, false)
		}
	}
	m.Truncate(size)
	// Truncate leaves an answer that fits uncompressed uncompressed; a
	// smaller one costs nothing more to send.
	m.Compress = true
	return m
}

// forward asks each upstream in turn and returns the first answer, whatever
// its code: an upstream that says NXDOMAIN has answered.
func (h handler) forward(r *dns.Msg) *dns.Msg {
	c := &dns.Client{Net: h.net, Timeout: h.s.cfg.ForwardTimeout}
	for _, up := range h.s.cfg.Forward {
		resp, _, err := c.Exchange(r, up)
		if err == nil {
			// Bounded as our own answers are: an upstream may answer a
			// client's EDNS 65535 in full.
			return h.fit(r, resp)
		}
		h.s.cfg.Log.Debug("forwarding a DNS query", zap.String("upstream", up), zap.String("net", h.net), zap.Error(err))
	}
	m := new(dns.Msg).SetRcode(r, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	return h.fit(r, m)
}
