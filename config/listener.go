package config

import (
	"fmt"
	"time"

	"github.com/meshfed/meshfed/hostname"
)

// Bounds of the Hamlet and xDS listeners' handshakes.
const (
	// minHandshakeTimeout still lets a client on loopback or a LAN in;
	// maxHandshakeTimeout is gRPC's own default, which let idle
	// connections pile up.
	minHandshakeTimeout = 100 * time.Millisecond
	maxHandshakeTimeout = 2 * time.Minute
	maxHandshakes       = 65536
)

// checkHandshakes checks the Hamlet and xDS listeners' bounds before
// authentication.
func (c *Config) checkHandshakes() error {
	f, x := c.Federation, c.XDS
	if err := checkHandshakeBounds("federation", f.HandshakeTimeout, f.MaxHandshakes, f.MaxHandshakesPerSource); err != nil {
		return err
	}
	return checkHandshakeBounds("xds", x.HandshakeTimeout, x.MaxHandshakes, x.MaxHandshakesPerSource)
}

func checkHandshakeBounds(at string, timeout Duration, most, perSource int) error {
	if d := time.Duration(timeout); d < minHandshakeTimeout || d > maxHandshakeTimeout {
		return fieldErr(at+".handshakeTimeout", "%s is out of range %s-%s", d, minHandshakeTimeout, maxHandshakeTimeout)
	}
	if most < 1 || most > maxHandshakes {
		return fieldErr(at+".maxHandshakes", "%d is out of range 1-%d", most, maxHandshakes)
	}
	if perSource < 1 || perSource > most {
		return fieldErr(at+".maxHandshakesPerSource", "%d is out of range 1-%d (%s.maxHandshakes)", perSource, most, at)
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
