// Package snapshot translates the model into the Envoy v3 resources of the
// egress and ingress gateways. The translation is pure: the same Input always
// yields the same resources, in the same order, with the same names. Builders
// cannot fail; the input was validated where it entered (federation, certs,
// configuration), and Check verifies the result as Envoy would at load.
package snapshot

import (
	"time"

	"github.com/meshfed/meshfed/model"
)

// Settings are what the translation reads that comes from the
// configuration, not from a catalog: a Translator takes them once, and
// again only when the configuration is reloaded.
type Settings struct {
	// TrustDomain is this mesh's SPIFFE trust domain.
	TrustDomain string `json:"trustDomain"`
	// Peers give each peer's trust domain and allowed SPIFFE IDs.
	Peers []model.Peer `json:"peers,omitempty"`
	// Gateways are the listen addresses of the two gateways.
	Gateways Gateways `json:"gateways"`
	// HTTPRouteTimeout bounds an HTTP request through the egress gateway,
	// from its start to the end of the response; 0 is no bound. Streams
	// (gRPC, HTTP/2, WebSocket) have none.
	HTTPRouteTimeout time.Duration `json:"httpRouteTimeout,omitempty"`
	// StreamIdleTimeout closes an HTTP request on which nothing moved for
	// that long; 0 is Envoy's default (5 minutes). Streams are exempt.
	StreamIdleTimeout time.Duration `json:"streamIdleTimeout,omitempty"`
	// EgressSources, when set, are the only client address ranges (CIDRs,
	// valid) the egress gateway serves.
	EgressSources []string `json:"egressSources,omitempty"`
	// Consul, when set, is the Consul mesh beside the gateways: the names
	// Consul gives imports, and Consul Connect both ways (consul.go).
	Consul *Consul `json:"consul,omitempty"`
}

// Input is a whole catalog with its settings and certificates: what Build
// translates at once.
type Input struct {
	Settings
	// Imports are the services imported from peers (egress gateway).
	Imports []model.Import `json:"imports,omitempty"`
	// Exports are the local services offered to peers (ingress gateway).
	Exports []model.Export `json:"exports,omitempty"`
	// EgressPorts is the dedicated egress listener port per EgressKey, for
	// every key EgressPortKeys lists. Allocation and persistence happen
	// elsewhere; an instance without a port gets no listener.
	EgressPorts map[string]uint32 `json:"egressPorts,omitempty"`
	// Secrets are the certificates the gateways use.
	Secrets Secrets `json:"secrets"`
}

// view is what the translation of one service reads besides the service:
// the settings and the certificates in use.
type view struct {
	Settings
	Secrets Secrets
}

// Gateways are the listen addresses of the gateways.
type Gateways struct {
	// Egress is the IP every egress listener binds: HTTP listeners on the
	// imported services' own ports, dedicated listeners on their
	// EgressPorts.
	Egress Address `json:"egress"`
	// Ingress is the address of the ingress TLS listener.
	Ingress SocketAddress `json:"ingress"`
}

// Address is an IP.
type Address struct {
	Address string `json:"address"`
}

// SocketAddress is an IP and a port.
type SocketAddress struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
}

// Secrets are the PEM material of the gateways.
type Secrets struct {
	// SVIDs is the X.509-SVID of each gateway role.
	SVIDs map[model.Role]SVID `json:"svids,omitempty"`
	// Bundles is the X.509 trust bundle (PEM, one or more CA certificates)
	// of each peer trust domain.
	Bundles map[string]string `json:"bundles,omitempty"`
	// Consul is Consul Connect's CA material, with Input.Consul.
	Consul ConsulSecrets `json:"consul,omitempty"`
}

// SVID is a certificate chain and its private key, both PEM.
type SVID struct {
	CertChain  string `json:"certChain"`
	PrivateKey string `json:"privateKey"`
}

// peer is the configured peer called name; ok is false when there is none.
func (in *view) peer(name string) (model.Peer, bool) {
	for _, p := range in.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return model.Peer{}, false
}
