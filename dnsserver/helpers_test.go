package dnsserver_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/dnsserver"
)

// web and db are the table most tests serve. db is spelled the way a
// careless caller might, to check that Set normalises names.
var (
	web = dnsserver.Record{
		Name:      "web.payments.peer-a.meshfed",
		Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.10"), netip.MustParseAddr("fd00::10")},
		SRV: []dnsserver.SRV{
			{Service: "http", Proto: "tcp", Port: 8080},
			{Service: "grpc", Port: 9090},
		},
	}
	db = dnsserver.Record{
		Name:      "DB.Peer-B.meshfed.",
		Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.11")},
		SRV:       []dnsserver.SRV{{Service: "pg", Port: 5432, Target: "web.payments.peer-a.meshfed"}},
	}
)

// start serves records on 127.0.0.1 and a free port until the test ends,
// and checks that Serve then returns cleanly.
func start(t *testing.T, cfg dnsserver.Config, records ...dnsserver.Record) (*dnsserver.Server, string) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Log == nil {
		cfg.Log = zaptest.NewLogger(t)
	}
	s, err := dnsserver.New(cfg)
	require.NoError(t, err)
	s.Set(records)
	require.NoError(t, s.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return s, s.Addr().String()
}

// exchange asks addr one question over network ("udp" or "tcp").
func exchange(t *testing.T, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network}
	resp, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, qtype), addr)
	require.NoError(t, err)
	return resp
}

// texts renders records in zone-file form, which makes a failed
// comparison readable.
func texts(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	return out
}

// deadAddr is a loopback address where nothing listens: the kernel answers
// at once with connection refused, on UDP as on TCP.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	return addr
}

var transports = []string{"udp", "tcp"}
