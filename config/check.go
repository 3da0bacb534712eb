package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
)

// fieldErr is a configuration error at a field path; Parse adds the line
// the field is on.
func fieldErr(path, format string, args ...any) error {
	return model.FieldErrorf(path, format, args...)
}

// check refuses what cannot run, naming the field and its value.
func (c *Config) check() error {
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		return fieldErr("trustDomain", "%s: %v", untrusted.Quote(c.TrustDomain), err)
	}
	if err := c.checkIdentity(); err != nil {
		return err
	}
	if _, ok := c.TrustBundles[c.TrustDomain]; !ok && c.Identity.WorkloadAPI == "" {
		return fieldErr("trustBundles", "no bundle for this mesh's own trust domain %s", untrusted.Quote(c.TrustDomain))
	}
	if err := c.checkTrustBundles(); err != nil {
		return err
	}
	if err := c.checkBundleEndpoint(); err != nil {
		return err
	}
	if _, _, err := splitHostPort(c.Federation.Listen); err != nil {
		return fieldErr("federation.listen", "%s: %v", untrusted.Quote(c.Federation.Listen), err)
	}
	if c.Federation.Window < 1 || c.Federation.Window > maxWindow {
		return fieldErr("federation.window", "%d is out of range 1-%d", c.Federation.Window, maxWindow)
	}
	if err := c.checkBatch(); err != nil {
		return err
	}
	if err := c.checkInputBounds(); err != nil {
		return err
	}
	if err := c.checkHandshakes(); err != nil {
		return err
	}
	if err := c.checkLifecycle(); err != nil {
		return err
	}
	for i, s := range c.Federation.DeniedCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fieldErr(fmt.Sprintf("federation.deniedCIDRs[%d]", i), "%s is not a CIDR", untrusted.Quote(s))
		}
	}
	if err := c.checkPeers(); err != nil {
		return err
	}
	if err := c.checkServing(); err != nil {
		return err
	}
	if c.Consul != nil {
		if err := c.Consul.Check(); err != nil {
			if fe := (*model.FieldError)(nil); errors.As(err, &fe) {
				return fe.Under("consul")
			}
			return fieldErr("consul", "%v", err)
		}
	}
	return nil
}

// Bounds of the tunables, each where a larger or smaller value stops
// making sense.
const (
	maxWindow = 4096
	// maxMaxBatch is the largest window: a batch never holds more than the
	// peer may have unacknowledged.
	maxMaxBatch   = maxWindow
	maxBatchDelay = time.Second
	// minRequestBytes still takes a delta reconnect naming some 5,900
	// resources (about 176 bytes each with meshfed's names); a protobuf
	// message is smaller than 2 GiB.
	minRequestBytes = 1 << 20
	maxRequestBytes = 1<<31 - 1
	// maxStreams is 100 times the per-connection default: Envoy opens one
	// stream per connection with ADS, one per kind of xDS without.
	maxStreams = 10000
	// maxServerStreams: at some 13 KB a stream, more would let streams
	// that never send a request hold over a GB.
	maxServerStreams = 100000
	// minFirstRequestTimeout leaves a gateway on a slow link time for a
	// large first request; maxFirstRequestTimeout is as long as a stream
	// that sends nothing should keep its place.
	minFirstRequestTimeout = time.Second
	maxFirstRequestTimeout = 10 * time.Minute
)

// checkBatch checks the group commit of what peers publish.
func (c *Config) checkBatch() error {
	if n := c.Federation.MaxBatch; n < 1 || n > maxMaxBatch {
		return fieldErr("federation.maxBatch", "%d is out of range 1-%d", n, maxMaxBatch)
	}
	if d := time.Duration(*c.Federation.BatchDelay); d < 0 || d > maxBatchDelay {
		return fieldErr("federation.batchDelay", "%s is out of range 0s-%s", d, maxBatchDelay)
	}
	return nil
}

// The bounds of exports.maxFileBytes: a registry file of one service
// takes some 300 bytes; one of 256 MiB, some 1.3 million services, would
// take about 9 GB to parse.
const (
	minFileBytes = 1 << 10
	maxFileBytes = 256 << 20
)

// checkInputBounds checks the bounds of what the agent reads from files.
func (c *Config) checkInputBounds() error {
	if n := c.Exports.MaxFileBytes; n < minFileBytes || n > maxFileBytes {
		return fieldErr("exports.maxFileBytes", "%d is out of range %d-%d (1 KiB to 256 MiB)", n, minFileBytes, maxFileBytes)
	}
	return nil
}

// checkXDSBounds checks the xDS server's bounds.
func (c *Config) checkXDSBounds() error {
	if n := c.XDS.MaxRequestBytes; n < minRequestBytes || n > maxRequestBytes {
		return fieldErr("xds.maxRequestBytes", "%d is out of range %d-%d (1 MiB to 2 GiB - 1)", n, minRequestBytes, maxRequestBytes)
	}
	for _, f := range []struct {
		field string
		n     int
	}{{"xds.maxStreamsPerConnection", c.XDS.MaxStreamsPerConnection}, {"xds.maxStreamsPerNode", c.XDS.MaxStreamsPerNode}} {
		if f.n < 1 || f.n > maxStreams {
			return fieldErr(f.field, "%d is out of range 1-%d", f.n, maxStreams)
		}
	}
	return nil
}

// checkXDSStreams checks the bounds on the streams a client holds.
func (c *Config) checkXDSStreams() error {
	for _, f := range []struct {
		field string
		n     int
	}{{"xds.maxStreamsPerIdentity", c.XDS.MaxStreamsPerIdentity}, {"xds.maxStreams", c.XDS.MaxStreams}} {
		if f.n < 1 || f.n > maxServerStreams {
			return fieldErr(f.field, "%d is out of range 1-%d", f.n, maxServerStreams)
		}
	}
	if d := time.Duration(c.XDS.FirstRequestTimeout); d < minFirstRequestTimeout || d > maxFirstRequestTimeout {
		return fieldErr("xds.firstRequestTimeout", "%s is out of range %s-%s", d, minFirstRequestTimeout, maxFirstRequestTimeout)
	}
	return nil
}

// checkPeers checks each peer: its name, trust domain and bundle, which
// identities authenticate its agent and may call through the ingress, and
// how it is reached.
func (c *Config) checkPeers() error {
	names := map[string]bool{}
	for i, p := range c.Peers {
		at := fmt.Sprintf("peers[%d]", i)
		if p.Name == "" {
			return fieldErr(fmt.Sprintf("%s.name", at), "empty")
		}
		if names[p.Name] {
			return fieldErr(fmt.Sprintf("%s.name", at), "%s is configured twice", untrusted.Quote(p.Name))
		}
		names[p.Name] = true
		td, err := spiffeid.TrustDomainFromString(p.TrustDomain)
		if err != nil {
			return fieldErr(fmt.Sprintf("%s.trustDomain", at), "%s: %v", untrusted.Quote(p.TrustDomain), err)
		}
		if _, ok := c.TrustBundles[p.TrustDomain]; !ok && c.Identity.WorkloadAPI == "" {
			return fieldErr(fmt.Sprintf("%s.trustDomain", at), "no trustBundles entry for %s", untrusted.Quote(p.TrustDomain))
		}
		if err := checkPeerIdentity(at, p, td); err != nil {
			return err
		}
		for j, s := range p.Callers {
			id, err := spiffeid.FromString(s)
			if err != nil {
				return fieldErr(fmt.Sprintf("%s.callers[%d]", at, j), "%s: %v", untrusted.Quote(s), err)
			}
			if id.TrustDomain() != td {
				return fieldErr(fmt.Sprintf("%s.callers[%d]", at, j), "%s is not in trust domain %s", untrusted.Quote(s), untrusted.Quote(p.TrustDomain))
			}
		}
		for j, s := range p.SANTrustDomains {
			if _, err := spiffeid.TrustDomainFromString(s); err != nil {
				return fieldErr(fmt.Sprintf("%s.sanTrustDomains[%d]", at, j), "%s: %v", untrusted.Quote(s), err)
			}
		}
		if p.Dial != "" {
			if _, _, err := splitHostPort(p.Dial); err != nil {
				return fieldErr(fmt.Sprintf("%s.dial", at), "%s: %v", untrusted.Quote(p.Dial), err)
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

// checkIdentity checks where each role's SVID comes from, in role order so
// that the first error reported does not change from run to run.
func (c *Config) checkIdentity() error {
	if c.Identity.WorkloadAPI == "" && c.Identity.Agent == nil {
		return fieldErr("identity", "neither workloadAPI nor agent files are set: the peer listener needs certificate material")
	}
	for _, r := range []struct {
		role string
		f    *Files
	}{{"agent", c.Identity.Agent}, {"egress", c.Identity.Egress}, {"ingress", c.Identity.Ingress}} {
		if r.f == nil && r.role != "agent" {
			return fieldErr("identity", "no %s files: the %s gateway needs an SVID (cert and key)", r.role, r.role)
		}
		if r.f != nil && (r.f.Cert == "" || r.f.Key == "") {
			return fieldErr(fmt.Sprintf("identity.%s", r.role), "both cert and key are needed")
		}
	}
	if c.Identity.ExpiryWarning < 0 {
		return fieldErr("identity.expiryWarning", "%s is negative", time.Duration(c.Identity.ExpiryWarning))
	}
	return nil
}

// checkPeerIdentity checks which identities authenticate peer p's agent:
// exact SPIFFE IDs, or, when asked for explicitly, its whole trust domain.
// Without either a workload of the peer's mesh could pose as its agent.
func checkPeerIdentity(at string, p Peer, td spiffeid.TrustDomain) error {
	switch {
	case p.AnyIDInTrustDomain && len(p.SPIFFEIDs) > 0:
		return fieldErr(at+".anyIdInTrustDomain", "set together with spiffeIds: list the agent's SPIFFE IDs or accept any ID of %s, not both", untrusted.Quote(p.TrustDomain))
	case !p.AnyIDInTrustDomain && len(p.SPIFFEIDs) == 0:
		return fieldErr(at+".spiffeIds", "required: the SPIFFE IDs peer %q's agent presents (meshfed certs init gives it spiffe://%s/meshfed/agent); "+
			"anyIdInTrustDomain: true accepts any ID of %q instead", p.Name, p.TrustDomain, p.TrustDomain)
	}
	for j, s := range p.SPIFFEIDs {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return fieldErr(fmt.Sprintf("%s.spiffeIds[%d]", at, j), "%s: %v", untrusted.Quote(s), err)
		}
		if id.TrustDomain() != td {
			return fieldErr(fmt.Sprintf("%s.spiffeIds[%d]", at, j), "%s is not in trust domain %s", untrusted.Quote(s), untrusted.Quote(p.TrustDomain))
		}
	}
	return nil
}

// checkServing checks what the agent serves locally: xDS, admin, DNS and
// the gateways.
func (c *Config) checkServing() error {
	if err := c.checkXDS(); err != nil {
		return err
	}
	if c.XDS.MaxDelay < c.XDS.Holdoff {
		return fieldErr("xds.maxDelay", "%s is shorter than xds.holdoff %s", time.Duration(c.XDS.MaxDelay), time.Duration(c.XDS.Holdoff))
	}
	if err := c.checkXDSBounds(); err != nil {
		return err
	}
	if err := c.checkXDSStreams(); err != nil {
		return err
	}
	if err := hostPort(c.Admin.Listen); err != nil {
		return fieldErr("admin.listen", "%s: %v", untrusted.Quote(c.Admin.Listen), err)
	}
	if err := c.checkAdminAuth(); err != nil {
		return err
	}
	if c.DNS.Listen != "" {
		if err := hostPort(c.DNS.Listen); err != nil {
			return fieldErr("dns.listen", "%s: %v", untrusted.Quote(c.DNS.Listen), err)
		}
	}
	for i, f := range c.DNS.Forward {
		if err := hostPort(f); err != nil {
			return fieldErr(fmt.Sprintf("dns.forward[%d]", i), "%s: %v", untrusted.Quote(f), err)
		}
	}
	eg, ig := c.Gateways.Egress, c.Gateways.Ingress
	if _, err := netip.ParseAddr(eg.Listen.Address); err != nil {
		return fieldErr("gateways.egress.listen.address", "%s is not an IP address", untrusted.Quote(eg.Listen.Address))
	}
	if _, err := netip.ParseAddr(ig.Listen.Address); err != nil {
		return fieldErr("gateways.ingress.listen.address", "%s is not an IP address", untrusted.Quote(ig.Listen.Address))
	}
	for _, p := range []struct {
		field string
		port  uint32
	}{{"gateways.ingress.listen.port", ig.Listen.Port}, {"gateways.egress.ports.from", eg.Ports.From}, {"gateways.egress.ports.to", eg.Ports.To}} {
		if p.port > 65535 {
			return fieldErr(p.field, "%d is not a port", p.port)
		}
	}
	if eg.Ports.From == 0 || eg.Ports.To < eg.Ports.From {
		return fieldErr("gateways.egress.ports", "%d-%d is not a range of ports", eg.Ports.From, eg.Ports.To)
	}
	if eg.Listen.Port != 0 {
		return fieldErr("gateways.egress.listen.port", "%d: the egress gateway has no shared port; it serves each HTTP import on the service's own port and the others on gateways.egress.ports, so set only gateways.egress.listen.address", eg.Listen.Port)
	}
	if d := *eg.HTTPRouteTimeout; d < 0 {
		return fieldErr("gateways.egress.httpRouteTimeout", "%s is negative", time.Duration(d))
	}
	if d := *eg.StreamIdleTimeout; d < 0 {
		return fieldErr("gateways.egress.streamIdleTimeout", "%s is negative", time.Duration(d))
	}
	for i, cidr := range eg.AllowedSources {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			return fieldErr(fmt.Sprintf("gateways.egress.allowedSources[%d]", i), "%s is not a CIDR such as 10.1.0.0/16", untrusted.Quote(cidr))
		}
	}
	seen := map[string]string{}
	for _, g := range []struct {
		role string
		ids  []string
	}{{"egress", eg.NodeIDs}, {"ingress", ig.NodeIDs}} {
		for i, id := range g.ids {
			field := fmt.Sprintf("gateways.%s.nodeIds[%d]", g.role, i)
			if id == "" {
				return fieldErr(field, "empty")
			}
			if other, ok := seen[id]; ok {
				return fieldErr(field, "%s is already a node id of the %s gateway", untrusted.Quote(id), other)
			}
			seen[id] = g.role
		}
	}
	return nil
}

// splitHostPort is net.SplitHostPort with errors that say what is wrong
// without repeating the address, which the message quotes already.
func splitHostPort(s string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(s)
	if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
		err = errors.New(ae.Err)
	}
	return host, port, err
}

func hostPort(s string) error {
	_, port, err := splitHostPort(s)
	if err != nil {
		return err
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 && port != "0" {
		return fmt.Errorf("port %s is not a number from 0 to 65535", untrusted.Quote(port))
	}
	return nil
}

// checkTrustBundles checks each trust domain's bundle source, in name
// order so the first error reported does not change from run to run.
func (c *Config) checkTrustBundles() error {
	for _, td := range slices.Sorted(maps.Keys(c.TrustBundles)) {
		b := c.TrustBundles[td]
		at := "trustBundles." + td
		if _, err := spiffeid.TrustDomainFromString(td); err != nil {
			return fieldErr("trustBundles", "key %s: %v", untrusted.Quote(td), err)
		}
		if (b.File == "") == (b.Endpoint == nil) {
			return fieldErr(at, "set exactly one of file and endpoint")
		}
		if b.Endpoint != nil {
			if err := c.checkBundleFetching(td, at+".endpoint", b.Endpoint); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Config) checkBundleFetching(td, at string, e *BundleFetching) error {
	if u, err := url.Parse(e.URL); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fieldErr(at+".url", "%s is not an https URL with a host and without user information", untrusted.Quote(e.URL))
	}
	switch e.Profile {
	case "https_web":
		for _, f := range [][2]string{{"spiffeId", e.SPIFFEID}, {"bootstrapBundle", e.BootstrapBundle}} {
			if f[1] != "" {
				return fieldErr(at+"."+f[0], "%s is for profile https_spiffe, not https_web", untrusted.Quote(f[1]))
			}
		}
		return nil
	case "https_spiffe":
	default:
		return fieldErr(at+".profile", "%s is not https_web or https_spiffe", untrusted.Quote(e.Profile))
	}
	if e.CAFile != "" {
		return fieldErr(at+".caFile", "%s is for profile https_web, not https_spiffe", untrusted.Quote(e.CAFile))
	}
	id, err := spiffeid.FromString(e.SPIFFEID)
	if err != nil {
		return fieldErr(at+".spiffeId", "%s: %v", untrusted.Quote(e.SPIFFEID), err)
	}
	// The federation spec: a self-serving endpoint is authenticated first
	// with a bundle given out of band; any other with its own trust
	// domain's bundle, which must then be configured.
	switch endpointTD := id.TrustDomain().Name(); {
	case endpointTD == td && e.BootstrapBundle == "":
		return fieldErr(at+".bootstrapBundle", "not set: the endpoint's spiffeId %s is in trust domain %s itself, so the first fetch can only be authenticated with a bundle of %s obtained out of band", untrusted.Quote(e.SPIFFEID), untrusted.Quote(td), untrusted.Quote(td))
	case endpointTD != td && e.BootstrapBundle != "":
		return fieldErr(at+".bootstrapBundle", "%s is only for an endpoint whose spiffeId is in %s; %s is authenticated with trustBundles.%s", untrusted.Quote(e.BootstrapBundle), untrusted.Quote(td), untrusted.Quote(e.SPIFFEID), endpointTD)
	case endpointTD != td:
		if _, ok := c.TrustBundles[endpointTD]; !ok {
			return fieldErr(at+".spiffeId", "%s is in trust domain %s, which has no trustBundles entry to authenticate the endpoint", untrusted.Quote(e.SPIFFEID), untrusted.Quote(endpointTD))
		}
	}
	return nil
}

// checkBundleEndpoint checks this mesh's own bundle endpoint.
func (c *Config) checkBundleEndpoint() error {
	be := c.BundleEndpoint
	if be == nil {
		return nil
	}
	if err := hostPort(be.Listen); err != nil {
		return fieldErr("bundleEndpoint.listen", "%s: %v", untrusted.Quote(be.Listen), err)
	}
	switch be.Profile {
	case "https_spiffe":
		if be.WebCertificate != nil {
			return fieldErr("bundleEndpoint.webCertificate", "is for profile https_web; https_spiffe presents the agent's SVID")
		}
	case "https_web":
		if f := be.WebCertificate; f == nil || f.Cert == "" || f.Key == "" {
			return fieldErr("bundleEndpoint.webCertificate", "profile https_web needs a cert and key for the endpoint's host name")
		}
	default:
		return fieldErr("bundleEndpoint.profile", "%s is not https_web or https_spiffe", untrusted.Quote(be.Profile))
	}
	if h := time.Duration(be.RefreshHint); h < 0 || h%time.Second != 0 {
		return fieldErr("bundleEndpoint.refreshHint", "%s is not a whole number of seconds (spiffe_refresh_hint is in seconds)", h)
	}
	return nil
}

// checkXDS refuses an xDS listener on which gateways would get their SVID
// private keys unauthenticated beyond this host, and a TLS block that
// cannot work.
func (c *Config) checkXDS() error {
	unix := strings.HasPrefix(c.XDS.Listen, "unix://")
	if !unix {
		if err := hostPort(c.XDS.Listen); err != nil {
			return fieldErr("xds.listen", "%s: %v", untrusted.Quote(c.XDS.Listen), err)
		}
		host, _, _ := net.SplitHostPort(c.XDS.Listen)
		ip, err := netip.ParseAddr(host)
		if c.XDS.TLS == nil && (err != nil || !ip.Unmap().IsLoopback()) {
			return fieldErr("xds.listen", "%s is not loopback, and gateways get their SVID private keys over xDS: set xds.tls (mutual TLS) or use a unix:// socket", untrusted.Quote(c.XDS.Listen))
		}
	}
	t := c.XDS.TLS
	if t == nil {
		return nil
	}
	if unix {
		return fieldErr("xds.tls", "is for a host:port xds.listen, not the Unix socket %s", untrusted.Quote(c.XDS.Listen))
	}
	nodes := map[string]bool{}
	for _, id := range append(slices.Clone(c.Gateways.Egress.NodeIDs), c.Gateways.Ingress.NodeIDs...) {
		nodes[id] = true
	}
	for i, g := range t.Gateways {
		at := fmt.Sprintf("xds.tls.gateways[%d]", i)
		id, err := spiffeid.FromString(g.SPIFFEID)
		if err != nil {
			return fieldErr(at+".spiffeId", "%s: %v", untrusted.Quote(g.SPIFFEID), err)
		}
		if id.TrustDomain().Name() != c.TrustDomain {
			return fieldErr(at+".spiffeId", "%s is not in this mesh's trust domain %s", untrusted.Quote(g.SPIFFEID), untrusted.Quote(c.TrustDomain))
		}
		if len(g.NodeIDs) == 0 {
			return fieldErr(at+".nodeIds", "required: the node ids this gateway may use")
		}
		for j, n := range g.NodeIDs {
			if !nodes[n] {
				return fieldErr(fmt.Sprintf("%s.nodeIds[%d]", at, j), "%s is not a node id of gateways.egress or gateways.ingress", untrusted.Quote(n))
			}
		}
	}
	return nil
}

// Bounds of how the agent waits for what comes and goes.
const (
	// minMaxBackoff is Hamlet's least wait before a redial; maxMaxBackoff
	// keeps a peer that came back from waiting longer than an hour.
	minMaxBackoff = time.Second
	maxMaxBackoff = time.Hour
	// minSettleTime is longer than the agent's own holdoff after a file
	// event (100ms); maxSettleTime keeps a broken pair from going
	// unreported for long.
	minSettleTime = 100 * time.Millisecond
	maxSettleTime = time.Minute
)

// checkLifecycle checks the redial backoff's cap and the settle time of
// rotated files.
func (c *Config) checkLifecycle() error {
	if d := time.Duration(c.Federation.MaxBackoff); d < minMaxBackoff || d > maxMaxBackoff {
		return fieldErr("federation.maxBackoff", "%s is out of range %s-%s", d, minMaxBackoff, maxMaxBackoff)
	}
	if d := time.Duration(c.Identity.SettleTime); d < minSettleTime || d > maxSettleTime {
		return fieldErr("identity.settleTime", "%s is out of range %s-%s", d, minSettleTime, maxSettleTime)
	}
	return nil
}
