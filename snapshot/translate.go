package snapshot

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/model"
)

// ServiceResources are the resources one service contributes to one gateway.
// HostRoutes are routing scopes, and make the egress HTTP listener of their
// port exist (EgressHTTP); IngressRoutes are how the ingress listeners
// reach an export's ports (ingressListeners); the rest are resources in
// their own right. Secrets may be shared by several services: equal names
// mean equal contents.
type ServiceResources struct {
	Clusters      []*cluster.Cluster
	Endpoints     []*endpoint.ClusterLoadAssignment
	Listeners     []*listener.Listener
	HostRoutes    []HostRoute
	IngressRoutes []IngressRoute
	// ConnectRoutes are how Consul Connect sidecars reach an import on the
	// egress Connect listener (egressConnectListener).
	ConnectRoutes []SNIRoute
	Secrets       []*tls.Secret
	// ConsulName is the Consul service name an import is routed by (its
	// Consul scopes and Connect route), "" when none: no two imports may
	// have one (WithoutConsulNames).
	ConsulName string
}

// HostRoute is the routing scope of one imported instance, served by the
// egress HTTP listener of the service port Port.
type HostRoute struct {
	Port  uint32
	Scope *route.ScopedRouteConfiguration
}

// DefaultHTTPPort is the port an HTTP, HTTP2 or GRPC instance is served on
// when the owner states none (no PORT metadata): HTTP's own.
const DefaultHTTPPort = 80

// egressResources are the egress gateway's resources for one import: per
// instance, the cluster of its upstream (UpstreamName: shared by the
// instances, of this import and others, with the same endpoints, SANs and
// protocol) that originates mutual TLS to the owner's ingress whatever the
// protocol, and either a routing scope on the service's own port (HTTP,
// HTTP2, GRPC) or a dedicated listener on the instance's EgressPorts port
// (the others; none while the port is not allocated), which sets the
// instance's SNI on the way (upstream.go).
//
// A host-routed instance serves LocalFQDN and LocalFQDN:port on the egress
// HTTP listener of its port (DefaultHTTPPort when the owner gave none).
// Two scopes cannot share a key (host and port), so of instances sharing
// a port the first by id has it. LocalFQDN is unique among imports (the
// catalog keys on it).
//
// With Input.Consul, the import's Consul name routes there too, and
// Connect sidecars reach its first instance by id on the egress Connect
// listener once Consul's leaf certificate for the name is there (consul.go).
func egressResources(in *view, imp model.Import, ports map[string]uint32) ServiceResources {
	var out ServiceResources
	peer, _ := in.peer(imp.Peer)
	cname, consul := consulName(in, imp)
	if consul {
		out.ConsulName = cname
	}
	insts := slices.Clone(imp.Service.Instances)
	slices.SortFunc(insts, func(a, b model.Instance) int { return cmp.Compare(a.ID, b.ID) })
	host := strings.ToLower(imp.LocalFQDN)
	claimed := map[uint32]bool{}
	sans := sortedSANs(imp.Service.SANs)
	for _, inst := range insts {
		name := EgressName(imp.Peer, imp.ResourceID, inst.ID)
		hps := selectEndpoints(imp.Service.Endpoints, inst.Selector)
		streaming := inst.Protocol == model.HTTP2 || inst.Protocol == model.GRPC
		up := UpstreamName(imp.Peer, upstream(hps, sans, streaming))
		if !slices.ContainsFunc(out.Clusters, func(c *cluster.Cluster) bool { return c.GetName() == up }) {
			c, cla := upstreamCluster(up, hps, true)
			// A workload that speaks TLS itself (TLS, MTLS, HTTPS) is
			// tunnelled inside this mTLS too: nothing crosses the
			// boundary without this mesh's identity, and the owner's
			// ingress routes on the SNI it advertised (set by the
			// instance's listener or route), not on the workload's.
			c.TransportSocket = upstreamTLS(peer, sans)
			c.OutlierDetection = outlierDetection()
			if streaming {
				c.TypedExtensionProtocolOptions = http2Options()
			}
			out.Clusters = append(out.Clusters, c)
			if cla != nil {
				out.Endpoints = append(out.Endpoints, cla)
			}
		}

		if consul && len(out.ConnectRoutes) == 0 {
			if r := egressConnectRoute(in, imp, cname, up, inst.SNI); r != nil {
				out.ConnectRoutes = append(out.ConnectRoutes, *r)
			}
		}
		if !inst.Protocol.RoutedByHost() {
			if port, ok := ports[EgressKey(imp.Peer, imp.ResourceID, inst.ID)]; ok {
				out.Listeners = append(out.Listeners, tcpListener(in, name, port, up, inst.SNI))
			}
			continue
		}
		port := HTTPPort(inst)
		if claimed[port] {
			continue
		}
		claimed[port] = true
		domains := []string{host, host + ":" + strconv.FormatUint(uint64(port), 10)}
		// The owner knows the service by its own name: the HOSTNAME the
		// instance states, else its fqdn when the local name is an alias.
		rewrite := inst.Hostname
		if rewrite == "" && imp.LocalFQDN != imp.Service.FQDN {
			rewrite = imp.Service.FQDN
		}
		vh := virtualHost(name, up, inst.SNI, domains, rewrite, streaming, in.HTTPRouteTimeout)
		out.HostRoutes = append(out.HostRoutes, HostRoute{Port: port, Scope: EgressScope(host, port, vh)})
		if consul {
			out.HostRoutes = append(out.HostRoutes, HostRoute{Port: port, Scope: consulScope(ConsulScopeName(imp.Peer, imp.ResourceID, inst.ID), cname, port, vh)})
		}
	}
	return out
}

// withoutConsulNames is in without the names Consul gives imports, for an
// import whose Consul name another import has.
func (in *view) withoutConsulNames() *view {
	c := *in
	c.Consul = nil
	return &c
}

// HTTPPort is the port of the egress HTTP listener that serves a
// host-routed instance.
func HTTPPort(inst model.Instance) uint32 {
	if inst.Port == 0 {
		return DefaultHTTPPort
	}
	return inst.Port
}

// ingressResources are the ingress gateway's resources for one export: per
// port, a cluster of the local endpoints (with its ClusterLoadAssignment
// when EDS) and the route by which the ingress listeners reach it by its
// SNI (ingressListeners); in terminate mode (the default) also the SPIFFE
// validator secret of the consumers' trust domains. An export none of
// whose consumers is a configured peer has nobody to serve and yields
// nothing.
//
// Terminate: the consumers' group chain requires a client SVID of a
// consumer trust domain and one of the consumers' identities during the
// handshake, and the port's chain proxies the decrypted stream.
// Passthrough: the port's chain proxies the raw TLS stream and the local
// service authenticates the caller.
func ingressResources(in *view, exp model.Export) ServiceResources {
	var out ServiceResources
	peers := consumers(in, exp)
	if len(peers) == 0 {
		return out
	}
	terminate := exp.Mode != model.Passthrough
	if terminate {
		tds := make([]string, 0, len(peers))
		for _, p := range peers {
			tds = append(tds, p.TrustDomain)
		}
		slices.Sort(tds)
		if s := validatorSecret(in, slices.Compact(tds)); s != nil {
			out.Secrets = append(out.Secrets, s)
		}
	}
	ports := slices.Clone(exp.Ports)
	slices.SortFunc(ports, func(a, b model.ExportPort) int { return cmp.Compare(a.Name, b.Name) })
	for _, p := range ports {
		name := IngressName(exp.Name, p.Name)
		c, cla := upstreamCluster(name, localEndpoints(p.Endpoints), false)
		if p.ConsulService != "" && in.Consul != nil {
			// The endpoints are Connect sidecars: they take Consul's
			// mutual TLS only.
			c.TransportSocket = connectUpstreamTLS(in, p.ConsulService)
		}
		out.Clusters = append(out.Clusters, c)
		if cla != nil {
			out.Endpoints = append(out.Endpoints, cla)
		}
		r := IngressRoute{SNI: p.SNI, Chain: exportChain(name)}
		if terminate {
			r.Consumers = peers
		}
		out.IngressRoutes = append(out.IngressRoutes, r)
	}
	return out
}

// gatewaySecrets are the secrets of role that no one service owns: the
// role's SVID, and for the egress gateway the trust bundle of every peer
// trust domain that has one. Missing material yields no secret.
func gatewaySecrets(in *view, role model.Role) []*tls.Secret {
	var out []*tls.Secret
	if s := svidSecret(in, role); s != nil {
		out = append(out, s)
	}
	if role != model.Egress {
		// The egress's are in its callers' validation contexts.
		if s := consulRootsSecret(in); s != nil {
			out = append(out, s)
		}
		if c, leaf := in.Consul, in.Secrets.Consul.Ingress; c != nil && c.IngressIdentity != "" && leaf != nil {
			out = append(out, leafSecret(c.IngressIdentity, *leaf))
		}
		return out
	}
	seen := map[string]bool{}
	for _, p := range in.Peers {
		if seen[p.TrustDomain] {
			continue
		}
		seen[p.TrustDomain] = true
		if s := bundleSecret(in, p.TrustDomain); s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Resources are the resources of every gateway role by type URL, each list
// sorted by name. Every role has every type of Types, possibly empty.
type Resources struct {
	ByRole map[model.Role]map[resource.Type][]types.Resource
	// Rejected are the services Build left out: their translation failed
	// the checks.
	Rejected []Rejection
}

// Types lists the resource types a gateway receives.
var Types = []resource.Type{
	resource.ClusterType,
	resource.EndpointType,
	resource.ListenerType,
	resource.ScopedRouteType,
	resource.SecretType,
}

// byType lays s out by type URL, sorted by name, with the one shared copy of
// every secret that several services carry.
func (s *ServiceResources) byType() map[resource.Type][]types.Resource {
	m := make(map[resource.Type][]types.Resource, len(Types))
	for _, t := range Types {
		m[t] = []types.Resource{}
	}
	for _, r := range s.Clusters {
		m[resource.ClusterType] = append(m[resource.ClusterType], r)
	}
	for _, r := range s.Endpoints {
		m[resource.EndpointType] = append(m[resource.EndpointType], r)
	}
	for _, r := range s.Listeners {
		m[resource.ListenerType] = append(m[resource.ListenerType], r)
	}
	for _, r := range s.HostRoutes {
		m[resource.ScopedRouteType] = append(m[resource.ScopedRouteType], r.Scope)
	}
	seen := map[string]bool{}
	for _, r := range s.Secrets {
		if !seen[r.GetName()] {
			seen[r.GetName()] = true
			m[resource.SecretType] = append(m[resource.SecretType], r)
		}
	}
	for _, rs := range m {
		slices.SortStableFunc(rs, func(a, b types.Resource) int { return cmp.Compare(Name(a), Name(b)) })
	}
	return m
}

// Name is the name of an xDS resource; empty for a type it does not know.
func Name(r types.Resource) string {
	if n, ok := r.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	if cla, ok := r.(*endpoint.ClusterLoadAssignment); ok {
		return cla.GetClusterName()
	}
	return ""
}
