package dnsserver_test

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/dnsserver"
)

// TestForward runs a second server as the upstream, behind one that does
// not answer, and checks that our own names never leave this server.
func TestForward(t *testing.T) {
	_, upstream := start(t, dnsserver.Config{}, dnsserver.Record{
		Name:      "api.example.org",
		Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.20")},
	}, dnsserver.Record{Name: web.Name, Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.99")}})
	reg := prometheus.NewRegistry()
	_, addr := start(t, dnsserver.Config{Forward: []string{deadAddr(t), upstream}, Registerer: reg}, web)

	for _, network := range transports {
		t.Run(network, func(t *testing.T) {
			resp := exchange(t, network, addr, "api.example.org.", dns.TypeA)
			require.Equal(t, "NOERROR", dns.RcodeToString[resp.Rcode])
			require.Equal(t, []string{"api.example.org.\t5\tIN\tA\t127.0.0.20"}, texts(resp.Answer))

			resp = exchange(t, network, addr, "missing.example.org.", dns.TypeA)
			require.Equal(t, "NXDOMAIN", dns.RcodeToString[resp.Rcode])
			require.Empty(t, resp.Answer)

			resp = exchange(t, network, addr, webName, dns.TypeA)
			require.Equal(t, "NOERROR", dns.RcodeToString[resp.Rcode])
			require.True(t, resp.Authoritative)
			require.True(t, resp.RecursionAvailable)
			require.Equal(t, []string{webA}, texts(resp.Answer), "our own name, not the upstream's")

			resp = exchange(t, network, addr, "_ftp._tcp."+webName, dns.TypeSRV)
			require.Equal(t, "NXDOMAIN", dns.RcodeToString[resp.Rcode])
			require.True(t, resp.Authoritative, "a port below our name is ours to deny")
		})
	}
	require.Equal(t, map[string]float64{"NOERROR": 4, "NXDOMAIN": 4}, queries(t, reg))
}

// queries reads meshfed_dns_queries_total by rcode.
func queries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "meshfed_dns_queries_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			require.Len(t, m.GetLabel(), 1)
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestForwardWithEveryUpstreamDown(t *testing.T) {
	_, addr := start(t, dnsserver.Config{Forward: []string{deadAddr(t)}}, web)
	for _, network := range transports {
		resp := exchange(t, network, addr, "api.example.org.", dns.TypeA)
		require.Equal(t, "SERVFAIL", dns.RcodeToString[resp.Rcode], network)
		require.True(t, resp.RecursionAvailable, network)
		require.Empty(t, resp.Answer, network)
	}
}
