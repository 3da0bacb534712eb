package dnsserver_test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/dnsserver"
)

// longName is a name of some 190 bytes, as long as the one of the report.
var longName = strings.Repeat("a-rather-long-label-of-a-service-name-00.", 4) + "peer-a.meshfed."

// sixtyFour is a name with 64 SRV records, each pointing at the name.
func sixtyFour() dnsserver.Record {
	r := dnsserver.Record{Name: longName, Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.10"), netip.MustParseAddr("fd00::10")}}
	for i := range 64 {
		r.SRV = append(r.SRV, dnsserver.SRV{Service: fmt.Sprintf("port-%d", i), Port: uint32(20000 + i)})
	}
	return r
}

// rawUDP sends q as one datagram and returns the datagram that answers it,
// as the wire carries it.
func rawUDP(t *testing.T, addr string, q *dns.Msg) []byte {
	t.Helper()
	b, err := q.Pack()
	require.NoError(t, err)
	conn, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second))) // a hang guard, not a measure
	_, err = conn.Write(b)
	require.NoError(t, err)
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	return buf[:n]
}

// The amplification of the report: a query of about 226 bytes advertising
// EDNS 65535, for a long name with 64 SRV records, got 26,935 bytes over
// UDP. The answer now fits 1232 bytes, compressed, with TC set; TCP
// carries every record.
func TestUDPAnswerFitsTheFlagDaySize(t *testing.T) {
	_, addr := start(t, dnsserver.Config{}, sixtyFour())
	q := new(dns.Msg).SetQuestion(longName, dns.TypeSRV).SetEdns0(65535, false)
	opt := q.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
	query, err := q.Pack()
	require.NoError(t, err)

	datagram := rawUDP(t, addr, q)
	require.LessOrEqual(t, len(datagram), 1232)
	var udp dns.Msg
	require.NoError(t, udp.Unpack(datagram))
	require.True(t, udp.Truncated, "TC tells the client to ask over TCP")
	require.NotEmpty(t, udp.Answer)
	require.Equal(t, uint16(1232), udp.IsEdns0().UDPSize())
	t.Logf("query %d bytes, UDP answer %d bytes (%d of 64 SRV records), x%.1f", len(query), len(datagram), len(udp.Answer), float64(len(datagram))/float64(len(query)))

	// Without EDNS, 512 bytes.
	datagram = rawUDP(t, addr, new(dns.Msg).SetQuestion(longName, dns.TypeSRV))
	require.LessOrEqual(t, len(datagram), 512)
	require.NoError(t, udp.Unpack(datagram))
	require.True(t, udp.Truncated)

	c := &dns.Client{Net: "tcp"}
	full, _, err := c.Exchange(q, addr)
	require.NoError(t, err)
	require.False(t, full.Truncated)
	require.Len(t, full.Answer, 64)
	require.Len(t, full.Extra, 3, "the target's A and AAAA, and OPT")
}

// An upstream's answer is bounded as our own: a forwarded EDNS 65535
// query for a large name gets at most 1232 bytes back over UDP.
func TestForwardedUDPAnswerFitsTheFlagDaySize(t *testing.T) {
	_, upstream := start(t, dnsserver.Config{}, sixtyFour())
	_, addr := start(t, dnsserver.Config{Forward: []string{upstream}})
	q := new(dns.Msg).SetQuestion(longName, dns.TypeSRV).SetEdns0(65535, false)
	datagram := rawUDP(t, addr, q)
	require.LessOrEqual(t, len(datagram), 1232)
	var udp dns.Msg
	require.NoError(t, udp.Unpack(datagram))
	require.True(t, udp.Truncated)
	require.Len(t, udp.Extra, 1, "one OPT, the upstream's")
	require.Equal(t, uint16(1232), udp.IsEdns0().UDPSize())
}
