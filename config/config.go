// Package config reads an agent's YAML configuration: strictly (an unknown
// or mistyped field is an error with its line), with paths relative to the
// file, and with every default set in one place.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry/consul"
)

// Config is one agent's configuration. examples/meshfed.yaml documents every
// field with its default.
type Config struct {
	// TrustDomain is this mesh's SPIFFE trust domain.
	TrustDomain string `yaml:"trustDomain"`
	// Identity says where the agent's and the gateways' SVIDs come from.
	Identity Identity `yaml:"identity"`
	// TrustBundles holds one bundle source per trust domain, this mesh's
	// own included.
	TrustBundles map[string]BundleSource `yaml:"trustBundles"`
	// BundleEndpoint serves this mesh's own bundle to peers when set.
	BundleEndpoint *BundleEndpoint `yaml:"bundleEndpoint"`
	Federation     Federation      `yaml:"federation"`
	Peers          []Peer          `yaml:"peers"`
	Store          Store           `yaml:"store"`
	XDS            XDS             `yaml:"xds"`
	Admin          Admin           `yaml:"admin"`
	DNS            DNS             `yaml:"dns"`
	Gateways       Gateways        `yaml:"gateways"`
	Exports        Exports         `yaml:"exports"`
	// Consul, when set, exports Consul services (consul.export) and
	// registers the imports in the Consul catalog (consul.import).
	Consul *consul.Config `yaml:"consul"`
}

// XDS is the ADS server the gateways connect to.
type XDS struct {
	// Listen is where the gateways connect, and decides how they are
	// authenticated, since they receive their SVID private keys over xDS:
	// unix://path, a Unix socket (default unix://xds.sock beside this
	// file, mode 0600: gateways on this host, as this user); or host:port
	// with TLS set (mutual TLS); or a loopback host:port without TLS, where
	// gateways get no private key.
	Listen string `yaml:"listen"`
	// TLS serves gateways over mutual TLS with the agent's SVID; each
	// gateway's SVID decides which node ids it may use.
	TLS *XDSTLS `yaml:"tls"`
	// Holdoff is how long a change waits for more before it is pushed
	// (default 10ms); MaxDelay bounds that wait in a burst (default 100ms).
	Holdoff  Duration `yaml:"holdoff"`
	MaxDelay Duration `yaml:"maxDelay"`
	// MaxRequestBytes bounds one request of a gateway (default 32 MiB, a
	// delta reconnect naming some 190,000 resources); a larger one ends
	// its stream with RESOURCE_EXHAUSTED. 1 MiB to 2 GiB - 1.
	MaxRequestBytes int `yaml:"maxRequestBytes"`
	// MaxStreamsPerConnection bounds the streams open at once on one
	// connection (default 100; Envoy opens one ADS stream per
	// connection). A client that opens more has them refused. 1 to 10000.
	MaxStreamsPerConnection int `yaml:"maxStreamsPerConnection"`
	// MaxStreamsPerNode bounds the open streams that name one node id,
	// over all connections (default 10: one per kind of xDS, and the
	// stream a reconnecting gateway left behind); a further one ends with
	// RESOURCE_EXHAUSTED. 1 to 10000.
	MaxStreamsPerNode int `yaml:"maxStreamsPerNode"`
	// MaxStreamsPerIdentity bounds the streams open at once for one
	// SPIFFE ID over mutual TLS, over all connections, from their start,
	// before any request (default 640: 100 gateways of one role that
	// share an ID, each with six streams without ADS, and 40 streams a
	// reconnect leaves behind). A further one ends with
	// RESOURCE_EXHAUSTED. 1 to 100000.
	MaxStreamsPerIdentity int `yaml:"maxStreamsPerIdentity"`
	// MaxStreams bounds the streams open at once on the xDS server, from
	// their start (default 800: one identity at its bound leaves 160 to
	// the others, and 10,000 streams that never send a request hold the
	// agent to under 20 MB). A further one ends with RESOURCE_EXHAUSTED.
	// 1 to 100000.
	MaxStreams int `yaml:"maxStreams"`
	// FirstRequestTimeout ends a stream that sends no request that long
	// after it opened, with DEADLINE_EXCEEDED (default 10s; Envoy sends
	// its first request at once). 1s to 10m.
	FirstRequestTimeout Duration `yaml:"firstRequestTimeout"`
	// HandshakeTimeout is how long a connection to a TCP Listen with TLS
	// has to finish its TLS and HTTP/2 handshakes (default 10s; 100ms to
	// 2m).
	HandshakeTimeout Duration `yaml:"handshakeTimeout"`
	// MaxHandshakes bounds the connections to a TCP Listen with TLS that
	// are in their TLS handshake at once, not yet authenticated (default
	// 256; 1 to 65536). Over it, the oldest such connection is closed;
	// authenticated gateways are not counted.
	MaxHandshakes int `yaml:"maxHandshakes"`
	// MaxHandshakesPerSource is MaxHandshakes for the connections of one
	// IPv4 address or IPv6 /64 (default 32; 1 to MaxHandshakes).
	MaxHandshakesPerSource int `yaml:"maxHandshakesPerSource"`
}

// XDSTLS is mutual TLS toward the gateways.
type XDSTLS struct {
	// Gateways are the SPIFFE IDs (of this trust domain) that may connect
	// and the node ids each may use. Default: this mesh's gateway IDs as
	// the development CA issues them, spiffe://<td>/meshfed/gateway/egress
	// and .../ingress, with gateways.egress.nodeIds and
	// gateways.ingress.nodeIds.
	Gateways []XDSGateway `yaml:"gateways"`
}

// XDSGateway is a gateway identity and the node ids it may use.
type XDSGateway struct {
	SPIFFEID string   `yaml:"spiffeId"`
	NodeIDs  []string `yaml:"nodeIds"`
}

// Admin is the HTTP server of health, metrics and the status API.
type Admin struct {
	// Listen defaults to 127.0.0.1:19100.
	Listen string `yaml:"listen"`
	// AllowNonLoopback lets Listen be an address other hosts reach.
	AllowNonLoopback bool `yaml:"allowNonLoopback"`
	// PProf serves /debug/pprof when set: to loopback, or to a client
	// that presents the token of TokenFile.
	PProf bool `yaml:"pprof"`
	// TokenFile holds the bearer token that a client beyond loopback must
	// present (Authorization: Bearer <token>) for anything but /healthz
	// and /readyz; at least 32 bytes, read at start. Required with
	// AllowNonLoopback.
	TokenFile string `yaml:"tokenFile"`
	// Hosts are further names the API answers to in the Host header
	// (such as agent.internal), besides localhost and IP addresses of
	// Listen; any other Host is refused, which defeats DNS rebinding.
	Hosts []string `yaml:"hosts"`
}

// DNS is the built-in DNS server answering for imported names.
type DNS struct {
	// Listen is an IP and port; the server is off when empty.
	Listen string `yaml:"listen"`
	// AllowNonLoopback lets Listen be an address other hosts reach.
	AllowNonLoopback bool `yaml:"allowNonLoopback"`
	// Forward are resolvers asked for names that are not imported; none
	// by default (such names get NXDOMAIN).
	Forward []string `yaml:"forward"`
}

// Gateways are the Envoy gateways the agent configures.
type Gateways struct {
	Egress  EgressGateway  `yaml:"egress"`
	Ingress IngressGateway `yaml:"ingress"`
}

// EgressGateway carries local workloads' calls to imported services.
type EgressGateway struct {
	// NodeIDs are the Envoy node ids served as egress gateways; default
	// [egress-gateway].
	NodeIDs []string `yaml:"nodeIds"`
	// Listen is the address every egress listener binds (default
	// 127.0.0.1, the mesh side of the gateway): HTTP, HTTP2 and GRPC
	// imports on their service's own port, the others on a port of Ports.
	Listen EgressListen `yaml:"listen"`
	// Ports is the range of dedicated listener ports; default 21000-21999.
	Ports PortRange `yaml:"ports"`
	// Advertise is the address workloads dial, given in DNS answers and
	// registries; default Listen.Address.
	Advertise string `yaml:"advertise"`
	// HTTPRouteTimeout bounds an HTTP request through the gateway, to the
	// end of its response (default 15s, Envoy's; 0s: no bound). gRPC,
	// HTTP/2 and WebSocket streams have none.
	HTTPRouteTimeout *Duration `yaml:"httpRouteTimeout"`
	// StreamIdleTimeout closes an HTTP request or stream on which nothing
	// moved for that long (default 5m, Envoy's; 0s: never). gRPC, HTTP/2
	// and WebSocket streams are exempt: they may idle for hours.
	StreamIdleTimeout *Duration `yaml:"streamIdleTimeout"`
	// AllowedSources, when set, are the only client address ranges (CIDRs)
	// the gateway serves: a second fence behind binding Listen.Address on
	// the mesh's side, so that it never calls a peer for anyone else.
	AllowedSources []string `yaml:"allowedSources"`
}

// EgressListen is where the egress listeners bind.
type EgressListen struct {
	Address string `yaml:"address"`
	// Port is refused: imports are served on their own ports, not on one
	// shared port (see check).
	Port uint32 `yaml:"port"`
}

// IngressGateway accepts peers' calls to exported services.
type IngressGateway struct {
	// NodeIDs default to [ingress-gateway].
	NodeIDs []string `yaml:"nodeIds"`
	// Listen is the TLS listener; default 127.0.0.1:15444.
	Listen Endpoint `yaml:"listen"`
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	From uint32 `yaml:"from"`
	To   uint32 `yaml:"to"`
}

// Exports names the sources of local services offered to peers.
type Exports struct {
	// File is a registry file, watched for changes. It must be a regular
	// file; a symbolic link to it must stay inside its folder, as a
	// Kubernetes ConfigMap's do.
	File string `yaml:"file"`
	// MaxFileBytes bounds the registry file's size (default 16 MiB, some
	// 80,000 services); a larger one is refused before it is parsed, as
	// parsing costs some 35 times its size in memory. 1 KiB to 256 MiB.
	MaxFileBytes int64 `yaml:"maxFileBytes"`
}

// Identity names the SVID source of each role.
type Identity struct {
	// WorkloadAPI, when set, is the SPIFFE Workload API socket the agent's
	// SVID comes from (unix:///path).
	WorkloadAPI string `yaml:"workloadAPI"`
	Agent       *Files `yaml:"agent"`
	Egress      *Files `yaml:"egress"`
	Ingress     *Files `yaml:"ingress"`
	// ExpiryWarning is how long before an SVID or a trust bundle's CA
	// expires that the agent and meshfed check warn of it; default 168h
	// (7 days).
	ExpiryWarning Duration `yaml:"expiryWarning"`
	// SettleTime is how long a certificate and its key (or a bundle file)
	// that change on disk may stay unusable before the agent calls it an
	// error: a rotation that writes the two files one after the other
	// passes through a pair that does not match. Default 2s; 100ms to 1m.
	SettleTime Duration `yaml:"settleTime"`
}

// DefaultSettleTime is Identity.SettleTime's default: a rotation by a
// tool (cert-manager, an ACME client, a script of two renames) writes the
// second file within milliseconds; 2 s leaves room for a loaded host
// without hiding a broken pair for long.
const DefaultSettleTime = 2 * time.Second

// DefaultExpiryWarning is Identity.ExpiryWarning's default.
const DefaultExpiryWarning = 7 * 24 * time.Hour

// Files is a PEM certificate chain and key on disk, reloaded on change.
type Files struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// BundleSource is a trust bundle in a PEM file, or a SPIFFE bundle endpoint.
type BundleSource struct {
	File     string          `yaml:"file"`
	Endpoint *BundleFetching `yaml:"endpoint"`
}

// BundleFetching is a peer's SPIFFE bundle endpoint.
type BundleFetching struct {
	// URL is the endpoint, https only.
	URL string `yaml:"url"`
	// Profile is https_web or https_spiffe.
	Profile string `yaml:"profile"`
	// SPIFFEID is the endpoint server's identity, for https_spiffe.
	SPIFFEID string `yaml:"spiffeId"`
	// BootstrapBundle is a file holding this trust domain's bundle (PEM or
	// SPIFFE JSON), obtained once out of band, which authenticates the
	// first fetch from an https_spiffe endpoint whose spiffeId is in this
	// same trust domain; required for such an endpoint. The first
	// successful fetch replaces it (and is kept across restarts).
	BootstrapBundle string `yaml:"bootstrapBundle"`
	// CAFile holds the PEM roots that verify an https_web endpoint;
	// default the system roots.
	CAFile string `yaml:"caFile"`
}

// BundleEndpoint serves this mesh's bundle.
type BundleEndpoint struct {
	// Listen defaults to 127.0.0.1:8443; binding beyond loopback is a
	// deliberate choice.
	Listen string `yaml:"listen"`
	// Profile is https_spiffe (default: the agent's SVID is the server
	// certificate) or https_web (WebCertificate is).
	Profile string `yaml:"profile"`
	// WebCertificate is the https_web server certificate for the
	// endpoint's host name, reloaded on change.
	WebCertificate *Files `yaml:"webCertificate"`
	// RefreshHint is the spiffe_refresh_hint sent to peers, in whole
	// seconds; 0 (the default) derives it from the agent SVID's lifetime
	// (certs.DefaultRefreshHint: a tenth, between 1m and 1h).
	RefreshHint Duration `yaml:"refreshHint"`
}

// Federation is the Hamlet side of the agent.
type Federation struct {
	// Listen is where peers that dial this agent connect. Default
	// 127.0.0.1:15443; binding beyond loopback is a deliberate choice.
	Listen string `yaml:"listen"`
	// Window is how many responses may be unacknowledged on a stream when
	// the peer agrees; 1 (the default) is the specification.
	Window int `yaml:"window"`
	// Grace is how long a peer without the sync-complete extension has to
	// resend its catalog after a reconnect before what it did not resend is
	// deleted. Default 30s.
	Grace Duration `yaml:"grace"`
	// Retention is how long imports of a disconnected peer are kept;
	// 0 (the default) keeps them.
	Retention Duration `yaml:"retention"`
	// MaxBatch is how many services of a peer are stored in one
	// transaction at most, before their ACKs are sent (default 256).
	// 1 to 4096, the largest window: a peer never has more unacknowledged.
	// It is also how many services a peer may send in one response, when
	// both agents speak services-per-response: a response is stored whole.
	MaxBatch int `yaml:"maxBatch"`
	// BatchDelay is how long a batch waits for more responses the peer may
	// still send within its window (default 1ms; 0s: a batch holds only
	// what has arrived). At most 1s.
	BatchDelay *Duration `yaml:"batchDelay"`
	// HandshakeTimeout is how long a connection to Listen has to finish
	// its TLS and HTTP/2 handshakes, and then a stream to bring its
	// opening request (default 10s; 100ms to 2m).
	HandshakeTimeout Duration `yaml:"handshakeTimeout"`
	// MaxHandshakes bounds the connections to Listen that are in their
	// TLS handshake at once, not yet authenticated (default 256; 1 to
	// 65536). Over it, the oldest such connection is closed;
	// authenticated peers are not counted.
	MaxHandshakes int `yaml:"maxHandshakes"`
	// MaxHandshakesPerSource is MaxHandshakes for the connections of one
	// IPv4 address or IPv6 /64 (default 32; 1 to MaxHandshakes).
	MaxHandshakesPerSource int `yaml:"maxHandshakesPerSource"`
	// MaxBackoff is the longest wait before a dialed peer is dialed again
	// after a failed stream or a refusal (default 2m; 1s to 1h). The waits
	// start at 1 s and double, with jitter, up to it.
	MaxBackoff Duration `yaml:"maxBackoff"`
	// DeniedCIDRs are ranges no imported endpoint may point into.
	DeniedCIDRs []string `yaml:"deniedCIDRs"`
	// Ingress is what peers are told to connect to for exported services.
	Ingress []Endpoint `yaml:"ingress"`
	// Advertise are the addresses (host:port) at which peers reach
	// Listen, written in invitations (meshfed peer invite); default
	// Listen, unless it binds every address.
	Advertise []string `yaml:"advertise"`
	// Join is the join endpoint, where a mesh given an invitation of this
	// agent comes to become its peer; off unless listen is set.
	Join *Join `yaml:"join"`
	// PeersDir holds the peers that meshfed peer invite and join added, a
	// file each (NAME.yaml, and the peer's bundle in NAME.bundle.pem),
	// read with this file; default peers.d beside it.
	PeersDir string `yaml:"peersDir"`
}

// Join is the join endpoint: HTTPS with the agent's SVID.
type Join struct {
	// Listen is where joining meshes connect (host:port). Binding beyond
	// loopback is a deliberate choice.
	Listen string `yaml:"listen"`
	// Advertise is the address (host:port) joining meshes dial, written
	// in invitations; default Listen, unless it binds every address.
	Advertise string `yaml:"advertise"`
}

// Endpoint is an address and port.
type Endpoint struct {
	Address string `yaml:"address"`
	Port    uint32 `yaml:"port"`
}

// Peer is a federated mesh.
type Peer struct {
	Name        string `yaml:"name"`
	TrustDomain string `yaml:"trustDomain"`
	// SPIFFEIDs are the identities the peer's agent may present on the
	// Hamlet stream; required unless AnyIDInTrustDomain is set.
	SPIFFEIDs []string `yaml:"spiffeIds"`
	// AnyIDInTrustDomain accepts any SPIFFE ID of the peer's trust domain
	// as its agent, its workloads' too: only for a peer whose agent's ID
	// is not known. The agent warns of it at start.
	AnyIDInTrustDomain bool `yaml:"anyIdInTrustDomain"`
	// Dial is the peer's Hamlet address; without it, the peer dials us.
	Dial           string `yaml:"dial"`
	Context        string `yaml:"context"`
	RequireContext bool   `yaml:"requireContext"`
	// MaxServices caps what the peer may publish; default 10000.
	MaxServices int `yaml:"maxServices"`
	// Alias renames the peer's services locally: {name}, {fqdn}, {peer}.
	Alias string `yaml:"alias"`
	// SANTrustDomains are further trust domains the peer may name in sans.
	SANTrustDomains []string `yaml:"sanTrustDomains"`
	// Callers are the SPIFFE IDs of the peer allowed through the ingress
	// gateway to services exported in terminate mode, usually its egress
	// gateways' IDs; default any ID of its trust domain. (SPIFFEIDs are
	// the IDs its agent may present on the Hamlet stream.)
	Callers []string `yaml:"callers"`
	// AllowLoopback accepts loopback endpoints from the peer: only for a
	// peer on the same host (development, the local demo).
	AllowLoopback bool `yaml:"allowLoopback"`
	// IstioALPN makes the egress gateway's TLS toward the peer offer the
	// ALPN an Istio sidecar does (istio-peer-exchange, istio), which an
	// Istio ingress in PERMISSIVE mode looks for to treat the connection
	// as mutual TLS rather than plain TCP.
	IstioALPN bool `yaml:"istioALPN"`
}

// Store is the embedded store of imports.
type Store struct {
	// Path of the bbolt file; default meshfed.db beside the configuration.
	Path string `yaml:"path"`
}

// DefaultXDSListen is a Unix socket beside the configuration file.
const DefaultXDSListen = "unix://xds.sock"

// DefaultHTTPRouteTimeout is Envoy's own route timeout, kept as the default
// of gateways.egress.httpRouteTimeout.
const DefaultHTTPRouteTimeout = 15 * time.Second

// DefaultStreamIdleTimeout is Envoy's own stream idle timeout, kept as the
// default of gateways.egress.streamIdleTimeout.
const DefaultStreamIdleTimeout = 5 * time.Minute

// Duration is a time.Duration written as "30s" or "2m".
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 2m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Load reads, defaults and checks the configuration at path. Its errors
// are an *Error naming the file, each problem with its line and field.
// The file is read as ReadFile reads it.
func Load(path string) (*Config, error) {
	b, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseFile(b, path)
}

// ParseFile is Parse of the content b of the file at path: relative paths
// are relative to its folder, and errors name it. The peers of
// federation.peersDir are added, with their bundles: an error in one of
// their files names that file.
func ParseFile(b []byte, path string) (*Config, error) {
	c, err := Parse(b, filepath.Dir(path))
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	if err != nil {
		return c, err
	}
	if err := c.addPeerFiles(path); err != nil {
		return nil, err
	}
	return c, nil
}

// ReadFile reads a configuration file: a regular file, reached through
// symbolic links that stay inside its folder (as a Kubernetes ConfigMap's
// do), of at most DefaultMaxFileBytes, which is checked before it is
// parsed. The bound cannot come from the file it bounds.
func ReadFile(path string) ([]byte, error) {
	return untrusted.File{MaxBytes: DefaultMaxFileBytes, Limit: "the bound of a configuration file"}.Read(path)
}

// Parse reads a configuration whose relative paths are relative to dir.
// Its errors are an *Error. Its aliases are bounded before anything
// expands them (untrusted.ParseYAML), and the file holds one document.
func Parse(b []byte, dir string) (*Config, error) {
	doc, err := untrusted.ParseYAML(b)
	if err != nil {
		return nil, &Error{Problems: []Problem{syntaxProblem(err)}}
	}
	if len(doc.Content) == 0 {
		return nil, &Error{Problems: []Problem{{Msg: "the file is empty; a configuration needs at least trustDomain, identity and trustBundles (examples/meshfed.yaml has every field)"}}}
	}
	problems, err := checkShape(doc)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	var c Config
	if err := decodeStrict(b, &c); err != nil {
		return nil, err
	}
	if p := explicitZeroDuration(doc); p != nil {
		return nil, &Error{Problems: []Problem{*p}}
	}
	c.defaults(dir)
	if err := c.check(); err != nil {
		p := Problem{Msg: err.Error()}
		var fe *model.FieldError
		if errors.As(err, &fe) {
			p = Problem{Field: fe.Path, Msg: fe.Msg, Line: LineOf(doc, fe.Path)}
		}
		return nil, &Error{Problems: []Problem{p}}
	}
	return &c, nil
}

// decodeStrict decodes what checkShape passed. It still refuses unknown
// fields, should the schema ever let one through.
func decodeStrict(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if err == nil {
		return nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &Error{Problems: []Problem{syntaxProblem(err)}}
	}
	out := &Error{}
	for _, msg := range te.Errors {
		p := syntaxProblem(errors.New(msg))
		// A key set to nothing passes the schema, which leaves it out:
		// the decoder names it, and it may be a line of another file.
		if m := unknownKeyRE.FindStringSubmatch(p.Msg); m != nil {
			p.Msg = fmt.Sprintf("a key of %d bytes is no field", len(m[1]))
			if untrusted.IsName(m[1]) {
				p.Msg = m[1] + ": unknown field"
			}
		}
		out.Problems = append(out.Problems, p)
	}
	return out
}

var unknownKeyRE = regexp.MustCompile(`^field (.*) not found in type \S+$`)

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxProblem takes the line out of yaml's "yaml: line N: ..." messages.
func syntaxProblem(err error) Problem {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Line: line, Msg: untrusted.Message(m[2])}
	}
	return Problem{Msg: untrusted.Message(strings.TrimPrefix(err.Error(), "yaml: "))}
}

// The defaults, applied once, here, where the configuration enters: the
// packages that use these values take them as given.
const (
	DefaultFederationListen = "127.0.0.1:15443"
	// DefaultPeersDir is beside the configuration file.
	DefaultPeersDir = "peers.d"
	// DefaultWindow is the Hamlet spec's: one response in flight.
	DefaultWindow    = 1
	DefaultGrace     = 30 * time.Second
	DefaultStorePath = "meshfed.db"
	DefaultHoldoff   = 10 * time.Millisecond
	DefaultMaxDelay  = 100 * time.Millisecond
	// DefaultAdminListen is where meshfed status and the other commands
	// look for an agent not given.
	DefaultAdminListen    = "127.0.0.1:19100"
	DefaultEgressNodeID   = "egress-gateway"
	DefaultIngressNodeID  = "ingress-gateway"
	DefaultGatewayAddress = "127.0.0.1"
	DefaultIngressPort    = 15444
	DefaultMaxServices    = 10000
	// DefaultMaxBatch and DefaultBatchDelay are the group commit's of
	// federation/session.
	DefaultMaxBatch   = 256
	DefaultBatchDelay = time.Millisecond
	// The xDS server's bounds, sized for 100,000 resources of a type.
	//
	// DefaultMaxRequestBytes holds the largest request a gateway sends: a
	// delta reconnect that subscribes to 100,000 resources by name and
	// gives the version of each it holds (initial_resource_versions,
	// sha256 in hex), some 20 MB with meshfed's names; over gRPC's 4 MiB
	// default, and short of what lets one request cost hundreds of MB.
	DefaultMaxRequestBytes = 32 << 20
	// DefaultMaxStreamsPerConnection: Envoy opens one ADS stream per
	// connection, or one per type without ADS.
	DefaultMaxStreamsPerConnection = 100
	// DefaultMaxStreamsPerNode leaves room for a gateway's streams of one
	// kind of xDS each, and for the stream a reconnecting gateway left
	// behind on a connection the server has not yet seen die.
	DefaultMaxStreamsPerNode = 10

	// Bounds on the xDS streams clients hold, those that never send a
	// request included. Such a stream costs the server some 13 KB (two
	// goroutines, 4 KB of heap) until it ends, and a connection some 20
	// KB: xds's TestRequestlessStreamsAreBounded measures them.
	//
	// DefaultMaxStreamsPerIdentity holds 100 gateways of one role that
	// share a SPIFFE ID, each with a stream of each of the six kinds of
	// xDS it uses without ADS, and 40 streams that gateways reconnecting
	// left behind on connections the server has not yet seen die.
	DefaultMaxStreamsPerIdentity = 640
	// DefaultMaxStreams leaves the other identities 160 streams (the
	// other role's gateways over ADS) when one is at its bound, and holds
	// 10,000 streams that never send a request, from any number of
	// identities on 100 connections, to under 20 MB.
	DefaultMaxStreams = 800
	// DefaultFirstRequestTimeout: Envoy sends its first request as soon
	// as its stream is open; ten seconds leave room for a slow link and a
	// first request of megabytes.
	DefaultFirstRequestTimeout = 10 * time.Second

	// DefaultMaxFileBytes bounds the registry file (exports.maxFileBytes)
	// and, not configurable, the configuration file itself.
	DefaultMaxFileBytes = untrusted.DefaultMaxFileBytes
)

// The Hamlet listener's bounds before authentication (see package
// federation/peer for their sizing).
const (
	DefaultHandshakeTimeout       = 10 * time.Second
	DefaultMaxHandshakes          = 256
	DefaultMaxHandshakesPerSource = 32
)

// DefaultMaxBackoff is federation.maxBackoff's default: a peer that comes
// back, or that adds this mesh again after a mistake, is found within
// 2 minutes, while a peer down for a day costs a dial every minute or so.
const DefaultMaxBackoff = 2 * time.Minute

// DefaultEgressPorts is the range dedicated egress listeners take ports
// from.
var DefaultEgressPorts = PortRange{From: 21000, To: 21999}

func (c *Config) defaults(dir string) {
	if c.Federation.Listen == "" {
		c.Federation.Listen = DefaultFederationListen
	}
	if c.Federation.Window == 0 {
		c.Federation.Window = DefaultWindow
	}
	if c.Federation.Grace == 0 {
		c.Federation.Grace = Duration(DefaultGrace)
	}
	if c.Store.Path == "" {
		c.Store.Path = DefaultStorePath
	}
	if c.Identity.ExpiryWarning == 0 {
		c.Identity.ExpiryWarning = Duration(DefaultExpiryWarning)
	}
	if c.Identity.SettleTime == 0 {
		c.Identity.SettleTime = Duration(DefaultSettleTime)
	}
	if c.XDS.Listen == "" {
		c.XDS.Listen = DefaultXDSListen
	}
	if c.XDS.Holdoff == 0 {
		c.XDS.Holdoff = Duration(DefaultHoldoff)
	}
	if c.XDS.MaxDelay == 0 {
		c.XDS.MaxDelay = Duration(DefaultMaxDelay)
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = DefaultAdminListen
	}
	c.gatewayDefaults()
	c.boundDefaults()
	c.inputDefaults()
	c.listenerDefaults()
	for i := range c.Peers {
		if c.Peers[i].MaxServices == 0 {
			c.Peers[i].MaxServices = DefaultMaxServices
		}
	}
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if c.Federation.PeersDir == "" {
		c.Federation.PeersDir = DefaultPeersDir
	}
	rel(&c.Store.Path)
	rel(&c.Federation.PeersDir)
	rel(&c.Exports.File)
	rel(&c.Admin.TokenFile)
	if path, ok := strings.CutPrefix(c.XDS.Listen, "unix://"); ok {
		rel(&path)
		c.XDS.Listen = "unix://" + path
	}
	if t := c.XDS.TLS; t != nil && len(t.Gateways) == 0 {
		for _, g := range []struct {
			role string
			ids  []string
		}{{"egress", c.Gateways.Egress.NodeIDs}, {"ingress", c.Gateways.Ingress.NodeIDs}} {
			t.Gateways = append(t.Gateways, XDSGateway{SPIFFEID: "spiffe://" + c.TrustDomain + "/meshfed/gateway/" + g.role, NodeIDs: g.ids})
		}
	}
	if c.Consul != nil {
		c.Consul.Default()
		rel(&c.Consul.TokenFile)
		if t := c.Consul.TLS; t != nil {
			rel(&t.CAFile)
			rel(&t.CertFile)
			rel(&t.KeyFile)
		}
	}
	for _, f := range []*Files{c.Identity.Agent, c.Identity.Egress, c.Identity.Ingress} {
		if f != nil {
			rel(&f.Cert)
			rel(&f.Key)
		}
	}
	c.bundleDefaults(rel)
}

// boundDefaults fills in the group commit of what peers publish and the
// xDS server's bounds.
func (c *Config) boundDefaults() {
	if c.Federation.MaxBatch == 0 {
		c.Federation.MaxBatch = DefaultMaxBatch
	}
	if c.Federation.BatchDelay == nil {
		d := Duration(DefaultBatchDelay)
		c.Federation.BatchDelay = &d
	}
	if c.XDS.MaxRequestBytes == 0 {
		c.XDS.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.XDS.MaxStreamsPerConnection == 0 {
		c.XDS.MaxStreamsPerConnection = DefaultMaxStreamsPerConnection
	}
	if c.XDS.MaxStreamsPerNode == 0 {
		c.XDS.MaxStreamsPerNode = DefaultMaxStreamsPerNode
	}
	if c.XDS.MaxStreamsPerIdentity == 0 {
		c.XDS.MaxStreamsPerIdentity = DefaultMaxStreamsPerIdentity
	}
	if c.XDS.MaxStreams == 0 {
		c.XDS.MaxStreams = DefaultMaxStreams
	}
	if c.XDS.FirstRequestTimeout == 0 {
		c.XDS.FirstRequestTimeout = Duration(DefaultFirstRequestTimeout)
	}
	handshakeDefaults(&c.XDS.HandshakeTimeout, &c.XDS.MaxHandshakes, &c.XDS.MaxHandshakesPerSource)
}

// inputDefaults fills in the bounds of what the agent reads from files.
func (c *Config) inputDefaults() {
	if c.Exports.MaxFileBytes == 0 {
		c.Exports.MaxFileBytes = DefaultMaxFileBytes
	}
}

// handshakeDefaults fills in a listener's bounds before authentication.
func handshakeDefaults(timeout *Duration, most, perSource *int) {
	if *timeout == 0 {
		*timeout = Duration(DefaultHandshakeTimeout)
	}
	if *most == 0 {
		*most = DefaultMaxHandshakes
	}
	if *perSource == 0 {
		*perSource = DefaultMaxHandshakesPerSource
	}
}

// listenerDefaults fills in the Hamlet listener's bounds.
func (c *Config) listenerDefaults() {
	f := &c.Federation
	handshakeDefaults(&f.HandshakeTimeout, &f.MaxHandshakes, &f.MaxHandshakesPerSource)
	if c.Federation.MaxBackoff == 0 {
		c.Federation.MaxBackoff = Duration(DefaultMaxBackoff)
	}
}

// gatewayDefaults fills in gateways.egress and gateways.ingress.
func (c *Config) gatewayDefaults() {
	eg, ig := &c.Gateways.Egress, &c.Gateways.Ingress
	if len(eg.NodeIDs) == 0 {
		eg.NodeIDs = []string{DefaultEgressNodeID}
	}
	if eg.Listen.Address == "" {
		eg.Listen.Address = DefaultGatewayAddress
	}
	if eg.Ports == (PortRange{}) {
		eg.Ports = DefaultEgressPorts
	}
	if eg.Advertise == "" {
		eg.Advertise = eg.Listen.Address
	}
	if eg.HTTPRouteTimeout == nil {
		d := Duration(DefaultHTTPRouteTimeout)
		eg.HTTPRouteTimeout = &d
	}
	if eg.StreamIdleTimeout == nil {
		d := Duration(DefaultStreamIdleTimeout)
		eg.StreamIdleTimeout = &d
	}
	if len(ig.NodeIDs) == 0 {
		ig.NodeIDs = []string{DefaultIngressNodeID}
	}
	if ig.Listen.Address == "" {
		ig.Listen.Address = DefaultGatewayAddress
	}
	if ig.Listen.Port == 0 {
		ig.Listen.Port = DefaultIngressPort
	}
}

// bundleDefaults resolves the trust bundle paths and defaults the bundle
// endpoint.
func (c *Config) bundleDefaults(rel func(*string)) {
	for td, b := range c.TrustBundles {
		rel(&b.File)
		if e := b.Endpoint; e != nil {
			rel(&e.BootstrapBundle)
			rel(&e.CAFile)
		}
		c.TrustBundles[td] = b
	}
	be := c.BundleEndpoint
	if be == nil {
		return
	}
	if be.Listen == "" {
		be.Listen = "127.0.0.1:8443"
	}
	if be.Profile == "" {
		be.Profile = "https_spiffe"
	}
	if f := be.WebCertificate; f != nil {
		rel(&f.Cert)
		rel(&f.Key)
	}
}

// SavedBundlePath is where the latest bundle fetched for a trust domain is
// kept across restarts: beside the store, as it is state, not
// configuration.
func (c *Config) SavedBundlePath(trustDomain string) string {
	return filepath.Join(filepath.Dir(c.Store.Path), "trust-bundles", trustDomain+".json")
}

// DeniedPrefixes parses Federation.DeniedCIDRs; check has vetted them.
func (c *Config) DeniedPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.Federation.DeniedCIDRs))
	for _, s := range c.Federation.DeniedCIDRs {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}
