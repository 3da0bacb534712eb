package snapshot

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"time"

	xdsmatcher "github.com/cncf/xds/go/xds/type/matcher/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	networkinputs "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/common_inputs/network/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
)

// Consul Connect, both ways.
//
// A Connect sidecar reaches an import at the egress's Connect listener
// (EgressConnectName, on Consul.ConnectPort), where the Consul catalog
// says the import's Connect proxy is. The sidecar sends the SNI Consul
// gives the import's service (<name>.default.<datacenter>.internal.<trust
// domain>), which picks the import's chain, exactly, as on the ingress.
// The chain ends the sidecar's mutual TLS with a Consul leaf certificate
// for the import's Consul name, checks the caller's against Consul's CA
// roots, asks the agent whether Consul's intentions let the caller's
// service reach the import (network ext_authz, as Consul 1.8's own
// sidecars ask their agent), and only then proxies to the import's
// cluster, which carries the call to the owner with this mesh's SVID.
//
// The other way, an exported port whose endpoints are Connect sidecars
// (ExportPort.ConsulService) is reached by the ingress with Consul mutual
// TLS as a sidecar would: the SNI of that service, the leaf of the
// ingress's Consul identity (Consul.IngressIdentity), and the service's
// Consul SPIFFE ID checked against Consul's roots.
//
// Consul also names each import (registry.ImportName of
// Consul.NameTemplate): a request for <name>, <name>.service.<domain> or
// <name>.service.<datacenter>.<domain>, with a tag of the instance in
// front or not, reaches the import on the egress HTTP listeners too.

// Consul is how the gateways meet the Consul mesh beside them.
type Consul struct {
	// Datacenter and Domain are the agent's: Consul's DNS names an
	// import <name>.service.<domain> and <name>.service.<datacenter>.<domain>.
	Datacenter string `json:"datacenter"`
	Domain     string `json:"domain"`
	// NameTemplate makes an import's Consul service name.
	NameTemplate string `json:"nameTemplate"`
	// ConnectPort, when set, is the egress port where Connect sidecars
	// reach the imports.
	ConnectPort uint32 `json:"connectPort,omitempty"`
	// IngressIdentity is the Consul service whose leaf certificate the
	// ingress presents to the Connect sidecars of exported services.
	IngressIdentity string `json:"ingressIdentity,omitempty"`
}

// ConsulSecrets are Consul Connect's CA material, from the Consul agent.
type ConsulSecrets struct {
	// TrustDomain is Consul's, such as 7f0c...5e1d.consul.
	TrustDomain string `json:"trustDomain,omitempty"`
	// Roots are Consul's active CA roots, PEM.
	Roots string `json:"roots,omitempty"`
	// Leaves are the egress's leaf certificates, by the Consul name of an
	// import.
	Leaves map[string]SVID `json:"leaves,omitempty"`
	// Ingress is the ingress's leaf certificate, of Consul.IngressIdentity.
	Ingress *SVID `json:"ingress,omitempty"`
	// Callers are, by the Consul name of an import, the services Consul's
	// intentions let call it.
	Callers map[string]ConsulCallers `json:"callers,omitempty"`
}

// consulName is the Consul service name of imp, when Consul names it.
func consulName(in *view, imp model.Import) (string, bool) {
	if in.Consul == nil || in.Consul.NameTemplate == "" {
		return "", false
	}
	n := registry.ImportName(in.Consul.NameTemplate, imp.Service.Name, imp.Peer)
	return n, registry.IsLabel(n)
}

// consulScopeKey is the scope key the egress listeners' Lua filter makes
// of a Consul name (consulKeyPrefix and the service name): no host has a
// '/'.
func consulScopeKey(name string, port uint32) string { return ScopeKey(consulKeyPrefix+name, port) }

const consulKeyPrefix = "consul/"

// consulScope, named scope, routes requests for the Consul names of an
// import (its Consul service name cname) on port as the import's own
// scope does for its FQDN (virtual host vh): Envoy selected the scope by
// the key, so every Host is the import's.
func consulScope(scope, cname string, port uint32, vh *route.VirtualHost) *route.ScopedRouteConfiguration {
	alias := &route.VirtualHost{Name: vh.GetName(), Domains: []string{"*"}, Routes: vh.GetRoutes()}
	return &route.ScopedRouteConfiguration{
		Name: scope,
		Key: &route.ScopedRouteConfiguration_Key{Fragments: []*route.ScopedRouteConfiguration_Key_Fragment{{
			Type: &route.ScopedRouteConfiguration_Key_Fragment_StringKey{StringKey: consulScopeKey(cname, port)},
		}}},
		RouteConfiguration: scopeRoutes(scope, alias),
	}
}

// consulSNI is the server name Consul's sidecars send to reach service.
func consulSNI(in *view, service string) string {
	return service + ".default." + in.Consul.Datacenter + ".internal." + in.Secrets.Consul.TrustDomain
}

// consulSPIFFEID is the identity Consul gives service's certificates.
func consulSPIFFEID(in *view, service string) string {
	return "spiffe://" + in.Secrets.Consul.TrustDomain + "/ns/default/dc/" + in.Consul.Datacenter + "/svc/" + service
}

// egressConnectRoute is how Connect sidecars reach imp, named name, whose
// instance is reached through cluster up with server name sni: nil while
// the Connect listener is off or Consul's trust domain is not known yet.
func egressConnectRoute(in *view, imp model.Import, name, up, sni string) *SNIRoute {
	if in.Consul.ConnectPort == 0 || consulLeafSecret(in, name) == nil || consulCallersSecret(in, name) == nil {
		return nil
	}
	chain := &listener.FilterChain{
		Name:            ConnectChainName(imp.Peer, imp.ResourceID),
		TransportSocket: connectServerTLS(name),
		Filters: []*listener.Filter{
			connectAuthz(name, ConnectChainName(imp.Peer, imp.ResourceID)),
			sniFilter(sni),
			tcpProxyFilter(&tcpproxy.TcpProxy{StatPrefix: ConnectChainName(imp.Peer, imp.ResourceID), ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: up}}),
		},
	}
	return &SNIRoute{SNI: consulSNI(in, name), Chain: chain}
}

// connectServerTLS ends a Connect sidecar's mutual TLS with the leaf of
// Consul service name, requiring a client certificate of Consul's CA of
// a service Consul's intentions let call it (consulCallersSecret): a
// caller they refuse fails the handshake.
func connectServerTLS(name string) *core.TransportSocket {
	ctx := &tls.DownstreamTlsContext{
		RequireClientCertificate: wrapBool(true),
		CommonTlsContext: &tls.CommonTlsContext{
			TlsParams:                      tlsParams(),
			TlsCertificateSdsSecretConfigs: []*tls.SdsSecretConfig{sdsSecret(ConsulLeafSecretName(name))},
			ValidationContextType: &tls.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: sdsSecret(ConsulCallersSecretName(name)),
			},
		},
	}
	return &core.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

// ConnectAuthzTarget is the gRPC metadata key that tells the agent's
// authorization service which Consul service a Connect caller wants.
const ConnectAuthzTarget = "x-meshfed-consul-target"

// connectAuthz asks the agent, over the gateway's xDS cluster, whether
// Consul's intentions let the caller reach Consul service name; a caller
// refused, or an agent that does not answer, is closed before a byte is
// forwarded. Its stats are under the chain's name.
func connectAuthz(name, chain string) *listener.Filter {
	cfg := &extauthz.ExtAuthz{
		StatPrefix: chain,
		GrpcService: &core.GrpcService{
			TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName}},
			Timeout:         durationpb.New(5 * time.Second),
			InitialMetadata: []*core.HeaderValue{{Key: ConnectAuthzTarget, Value: name}},
		},
		TransportApiVersion: core.ApiVersion_V3,
		// Consul's authorization takes the certificate's serial too.
		IncludePeerCertificate: true,
	}
	return &listener.Filter{Name: "envoy.filters.network.ext_authz", ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

// XDSClusterName is the gateways' bootstrap cluster to the agent, which
// also answers their authorization requests.
const XDSClusterName = "meshfed-xds"

// egressConnectListener is the egress listener of Connect sidecars, from
// the routes of every import (SNIs unique); nil without routes.
func egressConnectListener(in *view, routes []SNIRoute) *listener.Listener {
	if len(routes) == 0 {
		return nil
	}
	m := make(map[string]*xdsmatcher.Matcher_OnMatch, len(routes))
	chains := make([]*listener.FilterChain, 0, len(routes))
	for _, r := range routes {
		chains = append(chains, r.Chain)
		m[r.SNI] = chainAction(r.Chain.GetName())
	}
	slices.SortFunc(chains, func(a, b *listener.FilterChain) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return &listener.Listener{
		Name:                          EgressConnectName,
		Address:                       socketAddress(in.Gateways.Egress.Address, in.Consul.ConnectPort),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
		ListenerFilters:               []*listener.ListenerFilter{tlsInspector()},
		FilterChains:                  chains,
		FilterChainMatcher:            exactMatcher(&networkinputs.ServerNameInput{}, m),
		AccessLog:                     accessLogs(model.Egress, connectionLogFields),
	}
}

// connectUpstreamTLS is the ingress's Consul mutual TLS to the Connect
// sidecars of service.
func connectUpstreamTLS(in *view, service string) *core.TransportSocket {
	ctx := &tls.UpstreamTlsContext{
		Sni: consulSNI(in, service),
		CommonTlsContext: &tls.CommonTlsContext{
			TlsParams:                      tlsParams(),
			TlsCertificateSdsSecretConfigs: []*tls.SdsSecretConfig{sdsSecret(ConsulLeafSecretName(in.Consul.IngressIdentity))},
			ValidationContextType: &tls.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tls.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tls.CertificateValidationContext{MatchTypedSubjectAltNames: []*tls.SubjectAltNameMatcher{uriSAN(consulSPIFFEID(in, service), false)}},
					ValidationContextSdsSecretConfig: sdsSecret(ConsulRootsSecretName),
				},
			},
		},
	}
	return &core.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

// consulLeafSecret is the egress's leaf of the Consul name of an import;
// nil while there is none.
func consulLeafSecret(in *view, name string) *tls.Secret {
	leaf, ok := in.Secrets.Consul.Leaves[name]
	if !ok {
		return nil
	}
	return leafSecret(name, leaf)
}

func leafSecret(name string, leaf SVID) *tls.Secret {
	return &tls.Secret{Name: ConsulLeafSecretName(name), Type: &tls.Secret_TlsCertificate{TlsCertificate: &tls.TlsCertificate{
		CertificateChain: inline(leaf.CertChain),
		PrivateKey:       inline(leaf.PrivateKey),
	}}}
}

// consulEgressSecrets are the egress's Consul secrets of each Consul name
// of an import that Connect sidecars may reach: its leaf certificate and
// its callers, sorted by name; none without a Connect listener. The
// ingress's own leaf is among its gatewaySecrets.
func consulEgressSecrets(in *view) []*tls.Secret {
	if in.Consul == nil || in.Consul.ConnectPort == 0 {
		return nil
	}
	var out []*tls.Secret
	for _, name := range slices.Sorted(maps.Keys(in.Secrets.Consul.Leaves)) {
		out = append(out, consulLeafSecret(in, name))
	}
	for _, name := range slices.Sorted(maps.Keys(in.Secrets.Consul.Callers)) {
		if s := consulCallersSecret(in, name); s != nil {
			out = append(out, s)
		}
	}
	return out
}

// consulRootsSecret is Consul's CA roots; nil while they are unknown.
func consulRootsSecret(in *view) *tls.Secret {
	if in.Consul == nil || in.Secrets.Consul.Roots == "" {
		return nil
	}
	return &tls.Secret{Name: ConsulRootsSecretName, Type: &tls.Secret_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
		TrustedCa: inline(in.Secrets.Consul.Roots),
	}}}
}

// consulLuaKey is the part of the egress listeners' Lua filter that keys
// a request for a Consul name of an import: <name>, and <name>.service.
// <domain> or <name>.service.<datacenter>.<domain> with any tags in front.
// The domain and datacenter are DNS names (checked where configured), so
// they need no escaping in a Lua string.
func consulLuaKey(c *Consul) string {
	if c == nil || c.NameTemplate == "" {
		return ""
	}
	q := strconv.Quote
	return `  local function ends(s, suffix) return #s > #suffix and string.sub(s, -#suffix) == suffix end
  local rest = nil
  for _, suffix in ipairs({` + q(".service."+c.Domain) + `, ` + q(".service."+c.Datacenter+"."+c.Domain) + `}) do
    if ends(host, suffix) then rest = string.sub(host, 1, #host - #suffix) end
  end
  if rest == nil and not string.find(host, ".", 1, true) and host ~= "" then rest = host end
  if rest ~= nil then host = ` + q(consulKeyPrefix) + ` .. (string.match(rest, "([^.]+)$") or rest) end
`
}
