package config

import (
	"fmt"
	"time"

	"github.com/meshfed/meshfed/hostname"
)

// Bounds of the Hamlet listener's handshakes.
const (
	// minHandshakeTimeout still lets a peer on loopback or a LAN in;
	// maxHandshakeTimeout is gRPC's own default, which let idle
	// connections pile up.
	minHandshakeTimeout = 100 * time.Millisecond
	maxHandshakeTimeout = 2 * time.Minute
	maxHandshakes       = 65536
)

// checkHandshakes checks the Hamlet listener's bounds before
// authentication.
func (c *Config) checkHandshakes() error {
	f := c.Federation
	if d := time.Duration(f.HandshakeTimeout); d < minHandshakeTimeout || d > maxHandshakeTimeout {
		return fieldErr("federation.handshakeTimeout", "%s is out of range %s-%s", d, minHandshakeTimeout, maxHandshakeTimeout)
	}
	if n := f.MaxHandshakes; n < 1 || n > maxHandshakes {
		return fieldErr("federation.maxHandshakes", "%d is out of range 1-%d", n, maxHandshakes)
	}
	if n := f.MaxHandshakesPerSource; n < 1 || n > f.MaxHandshakes {
		return fieldErr("federation.maxHandshakesPerSource", "%d is out of range 1-%d (federation.maxHandshakes)", n, f.MaxHandshakes)
	}
	return nil
}

// checkAdminAuth refuses an admin API that other hosts would reach
// without a token, and host names it could not be asked by.
func (c *Config) checkAdminAuth() error {
	if c.Admin.AllowNonLoopback && c.Admin.TokenFile == "" {
		return fieldErr("admin.tokenFile", "required with admin.allowNonLoopback: other hosts must present a bearer token, read from this file")
	}
	for i, h := range c.Admin.Hosts {
		if why := hostname.Problem(h, hostname.Hostname); why != "" {
			return fieldErr(fmt.Sprintf("admin.hosts[%d]", i), "%q is not a host name such as agent.internal (%s); localhost and IP addresses of admin.listen are always accepted", h, why)
		}
	}
	return nil
}
