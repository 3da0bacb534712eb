package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"

	"github.com/meshfed/meshfed/model"
)

// Resource names.
//
// Every name meshfed gives (a resource's, a filter chain's, a virtual
// host's, a stat prefix, a reference to any of them) is a fixed prefix
// followed by fields joined by sep; a test holds every golden file to it. Each field
// that comes from configuration or from a peer goes through escape, which
// keeps [a-z0-9-] and writes every other byte as '_' and two lower-case hex
// digits. escape is injective and its output never holds sep, so splitting a
// name on sep gives back the escaped fields, and those give back the tuple:
// two different tuples never share a name (an upstream cluster's last field
// is a digest instead: UpstreamName). Names hold no '.' (Envoy's stat
// tag extraction splits on it: a cluster name with dots would break the
// envoy_cluster_name tag) and no ':' (Envoy rewrites it in stat names), so
// distinct resources keep distinct stats. No name depends on certificate
// material, so rotation never renames a resource.
const (
	sep = "/"

	// IngressTLSName names the ingress TLS listener.
	IngressTLSName = "ingress" + sep + "tls"
	// IngressRouterName names the ingress router: the internal listener
	// that takes each terminated connection to its export port's chain, and
	// the cluster that leads to it. Two fields, where IngressName has three.
	IngressRouterName = "ingress" + sep + "router"
)

const hexDigits = "0123456789abcdef"

// escape writes s with every byte outside [a-z0-9-] as _XX (hex).
func escape(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	return b.String()
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
}

func join(fields ...string) string {
	return strings.Join(fields, sep)
}

// EgressKey identifies an imported service instance: the key of its
// dedicated egress listener port in Input.EgressPorts. It is stable across
// restarts and injective in (peer, resource id, instance id).
func EgressKey(peer, resourceID, instanceID string) string {
	return join(escape(peer), escape(resourceID), escape(instanceID))
}

// EgressPortKeys lists, sorted, the EgressKey of every imported instance that
// needs a dedicated egress listener port: those not routed by host.
func EgressPortKeys(imports []model.Import) []string {
	var keys []string
	for _, imp := range imports {
		for _, inst := range imp.Service.Instances {
			if !inst.Protocol.RoutedByHost() {
				keys = append(keys, EgressKey(imp.Peer, imp.ResourceID, inst.ID))
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// EgressHTTPName names the egress HTTP listener of a service port. It has
// three fields where EgressName has four.
func EgressHTTPName(port uint32) string {
	return join("egress", "http", strconv.FormatUint(uint64(port), 10))
}

// EgressName names the routing scope and virtual host or dedicated
// listener, and their stat prefixes, of one imported instance (its
// cluster is its upstream's, UpstreamName).
func EgressName(peer, resourceID, instanceID string) string {
	return "egress" + sep + EgressKey(peer, resourceID, instanceID)
}

// UpstreamName names the cluster that carries imported instances of peer
// to the owner's ingress, shared by every instance with the same upstream
// (its endpoints, the SANs its owner's ingress must show, the protocol it
// speaks upstream), which upstream encodes: an owner's services usually
// all list its ingress addresses, and one cluster then serves them all,
// with one TLS context in Envoy instead of one per service. Its last field
// is 64 bits of upstream's SHA-256: distinct upstreams share a name with
// a probability of about 3e-10 at 100,000 of them.
func UpstreamName(peer string, upstream []byte) string {
	sum := sha256.Sum256(upstream)
	return join("upstream", escape(peer), hex.EncodeToString(sum[:8]))
}

// IngressName names the cluster, its ClusterLoadAssignment, its internal
// listener and filter chain, and its stat prefixes, of one port of an
// exported service.
func IngressName(export, port string) string {
	return join("ingress", escape(export), escape(port))
}

// ConsumersChainName names the ingress TLS listener's chain of the exports
// whose consumers are peers (sorted by name, unique): its first field is
// no other name's.
func ConsumersChainName(peers []model.Peer) string {
	fields := make([]string, 0, 1+len(peers))
	fields = append(fields, "consumers")
	for _, p := range peers {
		fields = append(fields, escape(p.Name))
	}
	return join(fields...)
}

// EgressConnectName names the egress listener of Consul Connect sidecars.
const EgressConnectName = "egress" + sep + "connect"

// ConnectChainName names the chain of the egress Connect listener that
// takes sidecars to the import of peer with resourceID.
func ConnectChainName(peer, resourceID string) string {
	return join("connect", escape(peer), escape(resourceID))
}

// ConsulScopeName names the routing scope of an imported instance's
// Consul names: the fields of its EgressName after another first field.
func ConsulScopeName(peer, resourceID, instanceID string) string {
	return "consul" + sep + EgressKey(peer, resourceID, instanceID)
}

// ConsulLeafSecretName names the SDS secret holding the Consul leaf
// certificate of a Consul service.
func ConsulLeafSecretName(service string) string {
	return join("meshfed", "consul-leaf", escape(service))
}

// ConsulCallersSecretName names the SDS validation context of the
// callers of the import whose Consul name is service.
func ConsulCallersSecretName(service string) string {
	return join("meshfed", "consul-callers", escape(service))
}

// ConsulRootsSecretName names the SDS validation context of Consul's CA
// roots.
const ConsulRootsSecretName = "meshfed" + sep + "consul-roots"

// SVIDSecretName names the SDS secret holding role's SVID.
func SVIDSecretName(role model.Role) string {
	return join("meshfed", "svid", escape(string(role)))
}

// BundleSecretName names the SDS validation context holding the trust bundle
// of trustDomain, used by the egress gateway to verify the owner's ingress.
func BundleSecretName(trustDomain string) string {
	return join("meshfed", "bundle", escape(trustDomain))
}

// ValidatorSecretName names the SDS validation context of the ingress
// gateway that accepts SVIDs of exactly the given trust domains (SPIFFE
// certificate validator). trustDomains must be sorted and unique.
func ValidatorSecretName(trustDomains []string) string {
	fields := make([]string, 0, 2+len(trustDomains))
	fields = append(fields, "meshfed", "validator")
	for _, td := range trustDomains {
		fields = append(fields, escape(td))
	}
	return join(fields...)
}
