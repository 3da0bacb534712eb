package config

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// fieldError is a configuration error at a field path such as
// peers[1].dial; Parse adds the line the field is on.
type fieldError struct {
	path string
	msg  string
}

func (e *fieldError) Error() string { return e.path + ": " + e.msg }

func fieldErr(path, format string, args ...any) error {
	return &fieldError{path: path, msg: fmt.Sprintf(format, args...)}
}

// check refuses what cannot run, naming the field and its value.
func (c *Config) check() error {
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		return fieldErr("trustDomain", "%q: %v", c.TrustDomain, err)
	}
	if c.Identity.WorkloadAPI == "" && c.Identity.Agent == nil {
		return fieldErr("identity", "neither workloadAPI nor agent files are set: the peer listener needs certificate material")
	}
	for role, f := range map[string]*Files{"agent": c.Identity.Agent, "egress": c.Identity.Egress, "ingress": c.Identity.Ingress} {
		if f != nil && (f.Cert == "" || f.Key == "") {
			return fieldErr(fmt.Sprintf("identity.%s", role), "both cert and key are needed")
		}
	}
	if _, ok := c.TrustBundles[c.TrustDomain]; !ok && c.Identity.WorkloadAPI == "" {
		return fieldErr("trustBundles", "no bundle for this mesh's own trust domain %q", c.TrustDomain)
	}
	for td, b := range c.TrustBundles {
		if _, err := spiffeid.TrustDomainFromString(td); err != nil {
			return fieldErr("trustBundles", "key %q: %v", td, err)
		}
		if (b.File == "") == (b.Endpoint == nil) {
			return fieldErr(fmt.Sprintf("trustBundles.%s", td), "set exactly one of file and endpoint")
		}
		if e := b.Endpoint; e != nil {
			switch e.Profile {
			case "https_web":
			case "https_spiffe":
				if _, err := spiffeid.FromString(e.SPIFFEID); err != nil {
					return fieldErr(fmt.Sprintf("trustBundles.%s.endpoint.spiffeId", td), "%q: %v", e.SPIFFEID, err)
				}
			default:
				return fieldErr(fmt.Sprintf("trustBundles.%s.endpoint.profile", td), "%q is not https_web or https_spiffe", e.Profile)
			}
		}
	}
	if _, _, err := net.SplitHostPort(c.Federation.Listen); err != nil {
		return fieldErr("federation.listen", "%q: %v", c.Federation.Listen, err)
	}
	if c.Federation.Window < 1 || c.Federation.Window > 4096 {
		return fieldErr("federation.window", "%d is out of range 1-4096", c.Federation.Window)
	}
	for i, s := range c.Federation.DeniedCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fieldErr(fmt.Sprintf("federation.deniedCIDRs[%d]", i), "%q is not a CIDR", s)
		}
	}
	names := map[string]bool{}
	for i, p := range c.Peers {
		at := fmt.Sprintf("peers[%d]", i)
		if p.Name == "" {
			return fieldErr(fmt.Sprintf("%s.name", at), "empty")
		}
		if names[p.Name] {
			return fieldErr(fmt.Sprintf("%s.name", at), "%q is configured twice", p.Name)
		}
		names[p.Name] = true
		td, err := spiffeid.TrustDomainFromString(p.TrustDomain)
		if err != nil {
			return fieldErr(fmt.Sprintf("%s.trustDomain", at), "%q: %v", p.TrustDomain, err)
		}
		if _, ok := c.TrustBundles[p.TrustDomain]; !ok && c.Identity.WorkloadAPI == "" {
			return fieldErr(fmt.Sprintf("%s.trustDomain", at), "no trustBundles entry for %q", p.TrustDomain)
		}
		for j, s := range p.SPIFFEIDs {
			id, err := spiffeid.FromString(s)
			if err != nil {
				return fieldErr(fmt.Sprintf("%s.spiffeIds[%d]", at, j), "%q: %v", s, err)
			}
			if id.TrustDomain() != td {
				return fieldErr(fmt.Sprintf("%s.spiffeIds[%d]", at, j), "%q is not in trust domain %q", s, p.TrustDomain)
			}
		}
		for j, s := range p.SANTrustDomains {
			if _, err := spiffeid.TrustDomainFromString(s); err != nil {
				return fieldErr(fmt.Sprintf("%s.sanTrustDomains[%d]", at, j), "%q: %v", s, err)
			}
		}
		if p.Dial != "" {
			if _, _, err := net.SplitHostPort(p.Dial); err != nil {
				return fieldErr(fmt.Sprintf("%s.dial", at), "%q: %v", p.Dial, err)
			}
		}
		if p.RequireContext && p.Context == "" {
			return fieldErr(fmt.Sprintf("%s.requireContext", at), "set, but context is empty")
		}
		if p.MaxServices < 0 {
			return fieldErr(fmt.Sprintf("%s.maxServices", at), "%d is negative", p.MaxServices)
		}
	}
	return nil
}
