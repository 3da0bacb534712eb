// Package dnsserver answers DNS queries for imported service names with the
// egress gateway's addresses, so that local workloads that resolve a remote
// service's name reach it through the gateway.
//
// Names the table does not hold are answered NXDOMAIN, or, when upstream
// resolvers are configured, forwarded to them. Negative answers for our own
// names carry no SOA: without one, resolvers do not cache them (RFC 2308
// section 5), which suits a table that changes whenever a peer's catalog does.
package dnsserver

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Config is what New needs. Field errors name the agent configuration's
// fields (dns.listen, dns.forward[i], ...), since that is where they come from.
type Config struct {
	// Listen is the address UDP and TCP are both served on, an IP literal
	// and a port such as 127.0.0.1:15353. Required.
	Listen string
	// AllowNonLoopback permits Listen to be other than a loopback address:
	// answering other hosts is a deliberate choice.
	AllowNonLoopback bool
	// TTL of our answers, in whole seconds; default 5s.
	TTL time.Duration
	// Forward lists upstream resolvers (host:port) asked, in order, for
	// names the table does not hold. Empty: such names are NXDOMAIN.
	Forward []string
	// ForwardTimeout bounds one exchange with one upstream; default 2s.
	ForwardTimeout time.Duration
	Log            *zap.Logger
	// Registerer takes meshfed_dns_queries_total; nil keeps it private.
	Registerer prometheus.Registerer
}

const (
	defaultTTL            = 5 * time.Second
	defaultForwardTimeout = 2 * time.Second
)

// check sets defaults and refuses what cannot run, returning the address to
// listen on.
func (c *Config) check() (netip.AddrPort, error) {
	if c.Listen == "" {
		return netip.AddrPort{}, fmt.Errorf("dns.listen: empty; set an address such as 127.0.0.1:15353")
	}
	ap, err := netip.ParseAddrPort(c.Listen)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dns.listen: %q is not an IP address and port such as 127.0.0.1:15353", c.Listen)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().IsLoopback() && !c.AllowNonLoopback {
		return netip.AddrPort{}, fmt.Errorf("dns.listen: %q is not a loopback address; set dns.allowNonLoopback to answer other hosts", c.Listen)
	}
	switch {
	case c.TTL == 0:
		c.TTL = defaultTTL
	case c.TTL < time.Second || c.TTL%time.Second != 0:
		return netip.AddrPort{}, fmt.Errorf("dns.ttl: %s is not a whole number of seconds of at least 1s", c.TTL)
	}
	for i, f := range c.Forward {
		if _, _, err := net.SplitHostPort(f); err != nil {
			return netip.AddrPort{}, fmt.Errorf("dns.forward[%d]: %q is not host:port: %v", i, f, err)
		}
		if f == c.Listen {
			return netip.AddrPort{}, fmt.Errorf("dns.forward[%d]: %q is dns.listen itself; forwarding to it would loop", i, f)
		}
	}
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = defaultForwardTimeout
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return ap, nil
}
