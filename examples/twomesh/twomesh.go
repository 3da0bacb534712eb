// Package twomesh lays out the two federated meshes that the demo and the
// end-to-end suite run on one host: for each mesh, a development CA with
// its agent's and gateways' SVIDs, the agent's configuration and the
// registry file of the service it exports, and the Envoy bootstraps of its
// gateways. mesh-b dials mesh-a; each exports one service to the other,
// with an HTTP, a gRPC and a TCP port.
package twomesh

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/certs"
	envoyconfigs "github.com/meshfed/meshfed/envoy-configs"
)

// The ports of each exported service, the same in both meshes: the
// service's own ports, on which the consumer's egress gateway serves it.
const (
	HTTPPort  = 8080
	GRPCPort  = 9090
	TCPPort   = 7000
	TLSPort   = 7443
	MTLSPort  = 7444
	HTTPSPort = 8443
)

// Mesh is one mesh of the pair.
type Mesh struct {
	Name    string // mesh-a or mesh-b
	Service string // the name of the service it exports
	// Dir holds certs/, meshfed.yaml, services.yaml and the store.
	Dir string
	// IP is the loopback address the mesh's gateways listen on; each mesh
	// has its own, as on separate hosts, so that both egress gateways can
	// serve imports on the same service ports.
	IP string
	// The agent's listen addresses. XDS is unix://path, or host:port
	// served over mutual TLS when XDSTLS is set.
	Federation, XDS, Admin, DNS string
	XDSTLS                      bool
	// GatewayAdmin and GatewayStats are, by role (egress, ingress), the
	// addresses of the gateways' admin interface and prometheus listener;
	// without, the admin port is Envoy's choice and there is no
	// prometheus listener.
	GatewayAdmin, GatewayStats map[string]string
	// IngressPort is the port of the ingress gateway's TLS listener, on IP.
	IngressPort uint32
	// PortsFrom and PortsTo bound the egress gateway's dedicated ports.
	PortsFrom, PortsTo uint32
	// Upstreams are the ports, on UpstreamIP, of the servers behind the
	// exported service's HTTP, gRPC and TCP ports, and of its TLS, MTLS and
	// HTTPS ports where set (the workloads speak TLS themselves there).
	Upstreams struct{ HTTP, GRPC, TCP, TLS, MTLS, HTTPS uint32 }
	// UpstreamIP is the address of the upstream servers; 127.0.0.1 when
	// empty.
	UpstreamIP string
	// ServicePorts are the exported service's own HTTP and gRPC ports,
	// on which the peer's egress gateway serves it; HTTPPort and GRPCPort
	// when zero.
	ServicePorts struct{ HTTP, GRPC uint32 }
	// HTTPRouteTimeout is gateways.egress.httpRouteTimeout ("" for the
	// default).
	HTTPRouteTimeout string
	// StreamIdleTimeout is gateways.egress.streamIdleTimeout ("" for the
	// default).
	StreamIdleTimeout string
	// HTTPSNI, when set, is the SNI of the exported service's HTTP port
	// (the owner's choice; outbound_.<port>_._.<fqdn> by default).
	HTTPSNI string
	// ExtraServices are appended to the registry file's services list
	// (YAML list entries, indented by two spaces).
	ExtraServices string
	// AllowedSources is gateways.egress.allowedSources.
	AllowedSources []string
	// OtherPeers are further meshes (trust domains <name>.example, with a
	// CA in <Dir>/../<name>/certs) known as peers, to which nothing is
	// exported and which never connect.
	OtherPeers []string
	// Holdoff is xds.holdoff ("" for the default).
	Holdoff string
	// MaxBackoff is federation.maxBackoff ("" for the default).
	MaxBackoff string
	// BundleEndpoint, when set, is the bundleEndpoint block (a YAML flow
	// mapping) that serves this mesh's bundle.
	BundleEndpoint string
	// PeerBundleEndpoint, when set, is the endpoint (a YAML flow mapping)
	// the peer's trust bundle is fetched from, instead of its file.
	PeerBundleEndpoint string
	// PeerRemoved leaves Peer out of the configuration, as an operator
	// who ends the federation does.
	PeerRemoved bool
	// Consul, when set, is the configuration's consul block (YAML,
	// indented by two spaces, without the consul: line).
	Consul string
	Peer   *Mesh
}

// TrustDomain is the mesh's trust domain, <name>.example.
func (m *Mesh) TrustDomain() string { return m.Name + ".example" }

// FQDN is the name of the service the mesh exports.
func (m *Mesh) FQDN() string { return m.Service + "." + m.TrustDomain() }

// HTTPPort is the exported service's HTTP port.
func (m *Mesh) HTTPPort() uint32 { return cmp.Or(m.ServicePorts.HTTP, HTTPPort) }

// GRPCPort is the exported service's gRPC port.
func (m *Mesh) GRPCPort() uint32 { return cmp.Or(m.ServicePorts.GRPC, GRPCPort) }

// CertsDir is where the mesh's CA and SVIDs are.
func (m *Mesh) CertsDir() string { return filepath.Join(m.Dir, "certs") }

// ConfigPath is the agent's configuration file.
func (m *Mesh) ConfigPath() string { return filepath.Join(m.Dir, "meshfed.yaml") }

// WriteCA writes a development CA and its SVIDs for the mesh called name
// under root, unless one is there already.
func WriteCA(root, name string) error {
	dir := filepath.Join(root, name, "certs")
	if _, err := os.Stat(filepath.Join(dir, certs.CACertFile)); err == nil {
		return nil
	}
	return certs.InitDevCA(certs.DevCAOptions{Dir: dir, TrustDomain: spiffeid.RequireTrustDomainFromString(name + ".example")})
}

// WriteServices writes the registry file of the mesh's exports: its service
// exported to its peer, or nothing (the service withdrawn).
func (m *Mesh) WriteServices(exported bool) error {
	y := "services: []\n"
	ip := cmp.Or(m.UpstreamIP, "127.0.0.1")
	if exported {
		y = fmt.Sprintf(`services:
  - name: %[1]s
    fqdn: %[2]s
    consumers: [%[3]s]
    ports:
      - {name: http, port: %[4]d, protocol: HTTP, sni: "%[10]s", endpoints: [{address: %[11]s, port: %[5]d}]}
      - {name: grpc, port: %[6]d, protocol: GRPC, endpoints: [{address: %[11]s, port: %[7]d}]}
      - {name: tcp, port: %[8]d, protocol: TCP, endpoints: [{address: %[11]s, port: %[9]d}]}
`, m.Service, m.FQDN(), m.Peer.Name, m.HTTPPort(), m.Upstreams.HTTP, m.GRPCPort(), m.Upstreams.GRPC, TCPPort, m.Upstreams.TCP, m.HTTPSNI, ip)
		for _, p := range []struct {
			name, protocol string
			port, upstream uint32
		}{{"tls", "TLS", TLSPort, m.Upstreams.TLS}, {"mtls", "MTLS", MTLSPort, m.Upstreams.MTLS}, {"https", "HTTPS", HTTPSPort, m.Upstreams.HTTPS}} {
			if p.upstream != 0 {
				y += fmt.Sprintf("      - {name: %s, port: %d, protocol: %s, endpoints: [{address: %s, port: %d}]}\n", p.name, p.port, p.protocol, ip, p.upstream)
			}
		}
		y += m.ExtraServices
	}
	return writeAtomic(filepath.Join(m.Dir, "services.yaml"), y)
}

// WriteConfig writes the agent's configuration.
func (m *Mesh) WriteConfig() error {
	dial := ""
	if m.Name == "mesh-b" {
		dial = m.Peer.Federation
	}
	var bundles, peers strings.Builder
	for _, o := range m.OtherPeers {
		fmt.Fprintf(&bundles, "  %[1]s.example: {file: ../%[1]s/certs/bundle.pem}\n", o)
		fmt.Fprintf(&peers, "  - {name: %[1]s, trustDomain: %[1]s.example, spiffeIds: [spiffe://%[1]s.example/meshfed/agent]}\n", o)
	}
	holdoff := ""
	if m.Holdoff != "" {
		holdoff = "  holdoff: " + m.Holdoff + "\n"
	}
	if m.XDSTLS {
		holdoff += "  tls: {}\n"
	}
	federation := ""
	if m.MaxBackoff != "" {
		federation = "  maxBackoff: " + m.MaxBackoff + "\n"
	}
	peerBundle := fmt.Sprintf("{file: ../%s/certs/bundle.pem}", m.Peer.Name)
	if m.PeerBundleEndpoint != "" {
		peerBundle = "{endpoint: " + m.PeerBundleEndpoint + "}"
	}
	if m.BundleEndpoint != "" {
		bundles.WriteString("bundleEndpoint: " + m.BundleEndpoint + "\n")
	}
	var egress strings.Builder
	if m.HTTPRouteTimeout != "" {
		fmt.Fprintf(&egress, "    httpRouteTimeout: %s\n", m.HTTPRouteTimeout)
	}
	if m.StreamIdleTimeout != "" {
		fmt.Fprintf(&egress, "    streamIdleTimeout: %s\n", m.StreamIdleTimeout)
	}
	if len(m.AllowedSources) > 0 {
		fmt.Fprintf(&egress, "    allowedSources: [%s]\n", strings.Join(m.AllowedSources, ", "))
	}
	peer := fmt.Sprintf(`  - name: %[1]s
    trustDomain: %[2]s
    spiffeIds: [spiffe://%[2]s/meshfed/agent]
    callers: [spiffe://%[2]s/meshfed/gateway/egress]
    dial: "%[3]s"
    allowLoopback: true   # both meshes run on this host
`, m.Peer.Name, m.Peer.TrustDomain(), dial)
	if m.PeerRemoved {
		peer = ""
	}
	y := fmt.Sprintf(`# %[1]s, one of two meshes federated on this host.
trustDomain: %[2]s
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  %[2]s: {file: certs/bundle.pem}
  %[3]s: %[4]s
%[5]sfederation:
  listen: %[6]s
  ingress: [{address: %[7]s, port: %[8]d}]
%[19]speers:
%[9]s%[10]sxds:
  listen: %[11]s
%[12]sadmin:
  listen: %[13]s
dns:
  listen: %[14]s
gateways:
  egress:
    listen: {address: %[7]s}
    ports: {from: %[15]d, to: %[16]d}
%[17]s  ingress:
    listen: {address: %[7]s, port: %[8]d}
exports:
  file: services.yaml
store:
  path: meshfed.db
%[18]s`, m.Name, m.TrustDomain(), m.Peer.TrustDomain(), peerBundle, bundles.String(), m.Federation, m.IP, m.IngressPort,
		peer, peers.String(), m.XDS, holdoff, m.Admin, m.DNS, m.PortsFrom, m.PortsTo, egress.String(), consulBlock(m.Consul), federation)
	return writeAtomic(m.ConfigPath(), y)
}

func consulBlock(y string) string {
	if y == "" {
		return ""
	}
	return "consul:\n" + y
}

// Bootstrap is the Envoy bootstrap of the mesh's gateway of role ("egress"
// or "ingress"): envoy-configs' file pointed at the agent's xDS address,
// with an admin port Envoy picks, delta ADS unless sotw, and no admin
// access log (tests and the demo poll the admin interface).
func (m *Mesh) Bootstrap(role string, sotw bool) ([]byte, error) {
	b, err := envoyconfigs.Load(role + ".yaml")
	if err != nil {
		return nil, err
	}
	p := envoyconfigs.Params{Admin: "127.0.0.1:0", XDS: m.XDS, SotW: sotw}
	if a := m.GatewayAdmin[role]; a != "" {
		p.Admin, p.Stats = a, m.GatewayStats[role]
	}
	if m.XDSTLS {
		p.XDSTLS = &envoyconfigs.ClientTLS{
			CertFile:   filepath.Join(m.CertsDir(), role+".pem"),
			KeyFile:    filepath.Join(m.CertsDir(), role+"-key.pem"),
			BundleFile: filepath.Join(m.CertsDir(), certs.BundleFile),
			AgentID:    "spiffe://" + m.TrustDomain() + "/meshfed/agent",
		}
	}
	if err := envoyconfigs.Apply(b, p); err != nil {
		return nil, err
	}
	b.GetAdmin().AccessLog = nil
	return envoyconfigs.Marshal(b)
}

// Resolver asks the DNS server at addr, as a workload of the mesh that uses
// meshfed's DNS does.
func Resolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
}

// HostPort is host:port.
func HostPort(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}

// writeAtomic replaces a file by a rename, as editors and ConfigMaps do, so
// that a watcher never reads half of it.
func writeAtomic(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
