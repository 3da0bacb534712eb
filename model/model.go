// Package model holds the one in-memory state of an agent: the services it
// imports from peers and the services it exports to them. Federation and
// certs produce it, snapshot translates it; it imports neither.
package model

import (
	"strconv"
	"time"
)

// Protocol is a FederatedService instance protocol, upper case as on the wire.
type Protocol string

// The protocols Hamlet defines.
const (
	HTTP  Protocol = "HTTP"
	HTTPS Protocol = "HTTPS"
	GRPC  Protocol = "GRPC"
	HTTP2 Protocol = "HTTP2"
	MONGO Protocol = "MONGO"
	TCP   Protocol = "TCP"
	TLS   Protocol = "TLS"
	MTLS  Protocol = "MTLS"
)

// Protocols lists every valid protocol.
var Protocols = []Protocol{HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS, MTLS}

// Valid reports whether p is one of Protocols.
func (p Protocol) Valid() bool {
	for _, q := range Protocols {
		if p == q {
			return true
		}
	}
	return false
}

// RoutedByHost reports whether instances of p share the egress HTTP listener
// and are routed by host; the others get a dedicated listener port each.
func (p Protocol) RoutedByHost() bool {
	return p == HTTP || p == HTTP2 || p == GRPC
}

// Endpoint is an address at which an owner mesh accepts a service's traffic.
type Endpoint struct {
	Address string   `json:"address"`
	Port    uint32   `json:"port"`
	Labels  []string `json:"labels,omitempty"`
}

// Instance is one protocol and port view of a service.
type Instance struct {
	ID       string   `json:"id"`
	Protocol Protocol `json:"protocol"`
	// SNI the owner's ingress routes on; empty when the owner gave none.
	SNI string `json:"sni,omitempty"`
	// Hostname is the HOSTNAME metadata, empty when absent.
	Hostname string `json:"hostname,omitempty"`
	// Port is the PORT metadata, 0 when absent.
	Port     uint32   `json:"port,omitempty"`
	Selector []string `json:"endpointSelector,omitempty"`
}

// Service is a validated FederatedService.
type Service struct {
	Name        string            `json:"name"`
	FQDN        string            `json:"fqdn"`
	Description string            `json:"description,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Endpoints   []Endpoint        `json:"endpoints"`
	SANs        []string          `json:"sans,omitempty"`
	Instances   []Instance        `json:"instances"`
}

// Import is a service a peer publishes to this agent.
type Import struct {
	Peer string `json:"peer"`
	// ResourceID is the key the peer uses for the service (its name or fqdn).
	ResourceID string `json:"resourceId"`
	// LocalFQDN is the name the service has in the local registry: its fqdn,
	// or the alias the peer's alias template gives it.
	LocalFQDN string  `json:"localFqdn"`
	Service   Service `json:"service"`
	// StaleSince is when the stream that carried the import dropped; zero
	// while the peer is connected.
	StaleSince time.Time `json:"staleSince,omitempty"`
}

// IngressMode says what the ingress gateway does with an exported service's
// TLS connections.
type IngressMode string

const (
	// Terminate ends the consumer's mTLS at the ingress gateway, checks the
	// caller's SPIFFE ID, then proxies to the local endpoints.
	Terminate IngressMode = "terminate"
	// Passthrough routes the raw TLS stream by SNI to the local service,
	// which terminates the consumers' SPIFFE mutual TLS itself: it, not the
	// gateway, authenticates them (Export.BackendIDs).
	Passthrough IngressMode = "passthrough"
)

// LocalEndpoint is an address:port inside the local mesh.
type LocalEndpoint struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
}

// ExportPort is one port of an exported service.
type ExportPort struct {
	// Name identifies the port within the service, used as the instance id.
	Name     string   `json:"name"`
	Port     uint32   `json:"port"`
	Protocol Protocol `json:"protocol"`
	// SNI overrides the default outbound_.<port>_._.<fqdn>.
	SNI       string          `json:"sni,omitempty"`
	Endpoints []LocalEndpoint `json:"endpoints"`
	// ConsulService, when set, is the Consul service whose Connect
	// sidecars (or Connect-native instances) the endpoints are: the
	// ingress reaches them with Consul Connect mutual TLS, as a sidecar
	// of that datacenter would.
	ConsulService string `json:"consulService,omitempty"`
}

// Export is a local service offered to some peers.
type Export struct {
	Name        string            `json:"name"`
	FQDN        string            `json:"fqdn"`
	Description string            `json:"description,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Ports       []ExportPort      `json:"ports"`
	Mode        IngressMode       `json:"mode"`
	// BackendIDs are the SPIFFE IDs the service presents in passthrough
	// mode, where it terminates the consumers' mutual TLS itself: peers are
	// told to verify these instead of the ingress gateway's.
	BackendIDs []string `json:"backendSpiffeIds,omitempty"`
	// Consumers are the names of the peers allowed to import the service.
	Consumers []string `json:"consumers"`
}

// Peer is a federated mesh as configured locally.
type Peer struct {
	Name        string `json:"name"`
	TrustDomain string `json:"trustDomain"`
	// SPIFFEIDs, when set, are the only identities the peer may present.
	SPIFFEIDs []string `json:"spiffeIds,omitempty"`
	// IstioALPN offers, in the egress gateway's TLS toward the peer, the
	// ALPN of an Istio sidecar.
	IstioALPN bool `json:"istioALPN,omitempty"`
}

// DefaultSNI is the SNI an exported service's port is reached on when the
// owner sets none: the format Istio east-west gateways already route on.
func DefaultSNI(port uint32, fqdn string) string {
	return "outbound_." + strconv.FormatUint(uint64(port), 10) + "_._." + fqdn
}
