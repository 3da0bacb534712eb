package dnsserver_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/dnsserver"
)

const (
	webA     = "web.payments.peer-a.meshfed.\t5\tIN\tA\t127.0.0.10"
	webAAAA  = "web.payments.peer-a.meshfed.\t5\tIN\tAAAA\tfd00::10"
	webHTTP  = "\t5\tIN\tSRV\t0 0 8080 web.payments.peer-a.meshfed."
	webGRPC  = "\t5\tIN\tSRV\t0 0 9090 web.payments.peer-a.meshfed."
	webName  = "web.payments.peer-a.meshfed."
	httpName = "_http._tcp.web.payments.peer-a.meshfed."
)

func TestAnswers(t *testing.T) {
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		aa     bool
		answer []string
		extra  []string
	}{
		{name: "A", qname: webName, qtype: dns.TypeA, rcode: dns.RcodeSuccess, aa: true, answer: []string{webA}},
		{name: "AAAA", qname: webName, qtype: dns.TypeAAAA, rcode: dns.RcodeSuccess, aa: true, answer: []string{webAAAA}},
		{
			name: "SRV by port name", qname: httpName, qtype: dns.TypeSRV, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{httpName + webHTTP}, extra: []string{webA, webAAAA},
		},
		{
			name: "SRV of the bare name lists every port", qname: webName, qtype: dns.TypeSRV, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{webName + webHTTP, webName + webGRPC}, extra: []string{webA, webAAAA},
		},
		{
			name: "ANY", qname: webName, qtype: dns.TypeANY, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{webA, webAAAA, webName + webHTTP, webName + webGRPC},
		},
		{
			name: "any case, answered in the question's spelling", qname: "WEB.Payments.peer-A.meshfed.", qtype: dns.TypeA, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"WEB.Payments.peer-A.meshfed.\t5\tIN\tA\t127.0.0.10"},
		},
		{
			name: "a record set with capitals and a trailing dot", qname: "db.peer-b.meshfed.", qtype: dns.TypeA, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"db.peer-b.meshfed.\t5\tIN\tA\t127.0.0.11"},
		},
		{
			name: "SRV with its own target and the target's addresses", qname: "_pg._tcp.db.peer-b.meshfed.", qtype: dns.TypeSRV, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"_pg._tcp.db.peer-b.meshfed.\t5\tIN\tSRV\t0 0 5432 web.payments.peer-a.meshfed."}, extra: []string{webA, webAAAA},
		},
		{name: "NODATA: a known name without AAAA", qname: "db.peer-b.meshfed.", qtype: dns.TypeAAAA, rcode: dns.RcodeSuccess, aa: true},
		{name: "NODATA: a known name without TXT", qname: webName, qtype: dns.TypeTXT, rcode: dns.RcodeSuccess, aa: true},
		{name: "NODATA: A of an SRV name", qname: httpName, qtype: dns.TypeA, rcode: dns.RcodeSuccess, aa: true},
		{name: "NXDOMAIN: a port the service lacks", qname: "_ftp._tcp.web.payments.peer-a.meshfed.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, aa: true},
		{name: "NXDOMAIN: a name not ours", qname: "example.com.", qtype: dns.TypeA, rcode: dns.RcodeNameError},
		{name: "NXDOMAIN: below one of our names", qname: "x.web.payments.peer-a.meshfed.", qtype: dns.TypeA, rcode: dns.RcodeNameError},
	}
	_, addr := start(t, dnsserver.Config{}, web, db)
	for _, network := range transports {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				resp := exchange(t, network, addr, tt.qname, tt.qtype)
				require.Equal(t, dns.RcodeToString[tt.rcode], dns.RcodeToString[resp.Rcode])
				require.Equal(t, tt.aa, resp.Authoritative, "authoritative")
				require.False(t, resp.RecursionAvailable, "recursion available without forwarders")
				require.False(t, resp.Truncated, "truncated")
				require.Equal(t, tt.answer, texts(resp.Answer))
				require.Equal(t, tt.extra, texts(resp.Extra))
			})
		}
	}
}

func TestSetReplacesTheTable(t *testing.T) {
	s, addr := start(t, dnsserver.Config{}, web)
	require.Equal(t, []string{webA}, texts(exchange(t, "udp", addr, webName, dns.TypeA).Answer))

	s.Set([]dnsserver.Record{db})
	resp := exchange(t, "udp", addr, webName, dns.TypeA)
	require.Equal(t, "NXDOMAIN", dns.RcodeToString[resp.Rcode])
	require.Empty(t, resp.Answer)
	require.Equal(t, []string{"db.peer-b.meshfed.\t5\tIN\tA\t127.0.0.11"}, texts(exchange(t, "udp", addr, "db.peer-b.meshfed.", dns.TypeA).Answer))

	s.Set(nil)
	require.Equal(t, "NXDOMAIN", dns.RcodeToString[exchange(t, "tcp", addr, "db.peer-b.meshfed.", dns.TypeA).Rcode])
}

// An update changes the names it is given and leaves the others; the
// glue of an SRV answer follows its target's latest addresses, and a name
// removed takes its named ports with it.
func TestUpdateChangesOnlyItsNames(t *testing.T) {
	s, addr := start(t, dnsserver.Config{}, web, db)
	moved := web
	moved.Addresses = []netip.Addr{netip.MustParseAddr("127.0.0.20")}
	moved.SRV = []dnsserver.SRV{{Service: "http", Proto: "tcp", Port: 8080}}
	s.Update([]dnsserver.Record{moved}, nil)
	require.Equal(t, []string{"web.payments.peer-a.meshfed.\t5\tIN\tA\t127.0.0.20"}, texts(exchange(t, "udp", addr, webName, dns.TypeA).Answer))
	resp := exchange(t, "udp", addr, "_grpc._tcp."+webName, dns.TypeSRV)
	require.Equal(t, "NXDOMAIN", dns.RcodeToString[resp.Rcode], "the port it no longer has")
	require.True(t, resp.Authoritative)
	resp = exchange(t, "udp", addr, "db.peer-b.meshfed.", dns.TypeSRV)
	require.Equal(t, []string{"web.payments.peer-a.meshfed.\t5\tIN\tA\t127.0.0.20"}, texts(resp.Extra), "the glue is its target's new address")

	s.Update(nil, []string{"DB.peer-b.meshfed"})
	require.Equal(t, "NXDOMAIN", dns.RcodeToString[exchange(t, "udp", addr, "db.peer-b.meshfed.", dns.TypeA).Rcode])
	require.Equal(t, "NXDOMAIN", dns.RcodeToString[exchange(t, "udp", addr, "_pg._tcp.db.peer-b.meshfed.", dns.TypeSRV).Rcode])
	require.Len(t, exchange(t, "udp", addr, webName, dns.TypeA).Answer, 1, "the other name stays")
}

func TestTTL(t *testing.T) {
	_, addr := start(t, dnsserver.Config{TTL: 30 * time.Second}, web)
	require.Equal(t, []string{"web.payments.peer-a.meshfed.\t30\tIN\tA\t127.0.0.10"}, texts(exchange(t, "udp", addr, webName, dns.TypeA).Answer))
}

// TestTruncation checks that an answer too large for a UDP datagram says so
// and that TCP then carries all of it. 25 ports take some 980 bytes (an SRV
// target is never compressed): more than 512, less than 1232.
func TestTruncation(t *testing.T) {
	big := dnsserver.Record{Name: "big.peer-a.meshfed"}
	var want []string
	for i := range 25 {
		big.SRV = append(big.SRV, dnsserver.SRV{Service: fmt.Sprintf("p%d", i), Port: uint32(10000 + i)})
		want = append(want, fmt.Sprintf("big.peer-a.meshfed.\t5\tIN\tSRV\t0 0 %d big.peer-a.meshfed.", 10000+i))
	}
	_, addr := start(t, dnsserver.Config{}, big)

	full := exchange(t, "tcp", addr, "big.peer-a.meshfed.", dns.TypeSRV)
	require.False(t, full.Truncated)
	require.Equal(t, want, texts(full.Answer))

	c := &dns.Client{Net: "udp"}
	udp, _, err := c.Exchange(new(dns.Msg).SetQuestion("big.peer-a.meshfed.", dns.TypeSRV), addr)
	require.NoError(t, err)
	require.True(t, udp.Truncated)
	require.Less(t, len(udp.Answer), len(want))
	require.Equal(t, want[:len(udp.Answer)], texts(udp.Answer))
	require.Nil(t, udp.IsEdns0(), "no EDNS in the answer to a query without it")

	edns, _, err := c.Exchange(new(dns.Msg).SetQuestion("big.peer-a.meshfed.", dns.TypeSRV).SetEdns0(4096, false), addr)
	require.NoError(t, err)
	require.False(t, edns.Truncated, "EDNS makes room")
	require.Equal(t, want, texts(edns.Answer))
	require.NotNil(t, edns.IsEdns0())
	require.Equal(t, uint16(1232), edns.IsEdns0().UDPSize())
}
