package dnsserver_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/dnsserver"
)

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  dnsserver.Config
		err  string
	}{
		{name: "no address", cfg: dnsserver.Config{}, err: "dns.listen: empty; set an address such as 127.0.0.1:15353"},
		{name: "a host name", cfg: dnsserver.Config{Listen: "localhost:15353"}, err: `dns.listen: "localhost:15353" is not an IP address and port such as 127.0.0.1:15353`},
		{name: "every interface", cfg: dnsserver.Config{Listen: "0.0.0.0:15353"}, err: `dns.listen: "0.0.0.0:15353" is not a loopback address; set dns.allowNonLoopback to answer other hosts`},
		{name: "every IPv6 interface", cfg: dnsserver.Config{Listen: "[::]:53"}, err: `dns.listen: "[::]:53" is not a loopback address; set dns.allowNonLoopback to answer other hosts`},
		{name: "a private address", cfg: dnsserver.Config{Listen: "10.1.2.3:53"}, err: `dns.listen: "10.1.2.3:53" is not a loopback address; set dns.allowNonLoopback to answer other hosts`},
		{name: "a TTL below a second", cfg: dnsserver.Config{Listen: "127.0.0.1:0", TTL: 500 * time.Millisecond}, err: "dns.ttl: 500ms is not a whole number of seconds of at least 1s"},
		{name: "a TTL with a fraction", cfg: dnsserver.Config{Listen: "127.0.0.1:0", TTL: 1500 * time.Millisecond}, err: "dns.ttl: 1.5s is not a whole number of seconds of at least 1s"},
		{name: "an upstream without a port", cfg: dnsserver.Config{Listen: "127.0.0.1:0", Forward: []string{"127.0.0.1:53", "192.0.2.1"}}, err: `dns.forward[1]: "192.0.2.1" is not host:port: address 192.0.2.1: missing port in address`},
		{name: "forwarding to itself", cfg: dnsserver.Config{Listen: "127.0.0.1:15353", Forward: []string{"127.0.0.1:15353"}}, err: `dns.forward[0]: "127.0.0.1:15353" is dns.listen itself; forwarding to it would loop`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dnsserver.New(tt.cfg)
			require.EqualError(t, err, tt.err)
		})
	}
}

func TestNewAccepts(t *testing.T) {
	for _, cfg := range []dnsserver.Config{
		{Listen: "0.0.0.0:15353", AllowNonLoopback: true},
		{Listen: "[::1]:15353"},
		{Listen: "127.0.0.53:53"},
		{Listen: "[::ffff:127.0.0.1]:15353"},
	} {
		s, err := dnsserver.New(cfg)
		require.NoError(t, err, cfg.Listen)
		require.Nil(t, s.Addr(), "nothing listens before Listen")
	}
}

func TestServeReturnsListenErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	s, err := dnsserver.New(dnsserver.Config{Listen: taken.Addr().String()})
	require.NoError(t, err)

	// A context that never ends: Serve must return by itself.
	err = s.Serve(context.Background())
	require.EqualError(t, err, fmt.Sprintf("dns.listen: listen tcp %[1]s: bind: address already in use", taken.Addr()))
}

func TestSetSkipsRecordsItCannotServe(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	_, addr := start(t, dnsserver.Config{Log: zap.New(core)},
		web,
		dnsserver.Record{Name: "", Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		dnsserver.Record{Name: "bad..name", Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		dnsserver.Record{Name: "WEB.payments.peer-a.meshfed", Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.99")}},
		dnsserver.Record{Name: "ports.peer-a.meshfed", SRV: []dnsserver.SRV{{Service: "zero", Port: 0}, {Service: "a.b", Port: 80}, {Service: "ok", Port: 81}}},
	)
	var got []string
	for _, e := range logs.All() {
		got = append(got, fmt.Sprintf("%s %v", e.Message, e.ContextMap()))
	}
	require.Equal(t, []string{
		"skipping a DNS record with an invalid name map[name:]",
		"skipping a DNS record with an invalid name map[name:bad..name]",
		"skipping a DNS record whose name is already served map[name:WEB.payments.peer-a.meshfed]",
		"skipping a DNS SRV record that cannot be served map[name:ports.peer-a.meshfed port:0 proto: service:zero target:]",
		"skipping a DNS SRV record that cannot be served map[name:ports.peer-a.meshfed port:80 proto: service:a.b target:]",
	}, got)

	require.Equal(t, []string{webA}, texts(exchange(t, "udp", addr, webName, dns.TypeA).Answer), "the first record of a name wins")
	require.Equal(t, []string{"_ok._tcp.ports.peer-a.meshfed.\t5\tIN\tSRV\t0 0 81 ports.peer-a.meshfed."},
		texts(exchange(t, "udp", addr, "_ok._tcp.ports.peer-a.meshfed.", dns.TypeSRV).Answer))
}
