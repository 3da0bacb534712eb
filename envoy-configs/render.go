package envoyconfigs

import (
	"embed"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	fixedheapv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

//go:embed egress.yaml ingress.yaml
var files embed.FS

// Names in the bootstraps' static resources.
const (
	// XDSClusterName is the cluster that reaches the agent's ADS endpoint.
	XDSClusterName = "meshfed-xds"
	// PrometheusListenerName serves /stats/prometheus from the admin
	// interface through adminClusterName.
	PrometheusListenerName = "prometheus"
	adminClusterName       = "envoy-admin"
)

// Params are what differs between two gateways made from the same file:
// what tests, the demo and the bench set so that several gateways run on
// one host.
type Params struct {
	// NodeID replaces node.id when set.
	NodeID string
	// Admin replaces the admin address (host:port, loopback); port 0 lets
	// Envoy choose (run it with --admin-address-path to learn it), and
	// then there is no prometheus listener, which must know the port.
	Admin string
	// Stats replaces the address of the prometheus listener.
	Stats string
	// XDS is the agent's ADS endpoint: host:port, or unix:///path.
	XDS string
	// XDSTLS, with a host:port XDS, is the gateway's side of mutual TLS.
	XDSTLS *ClientTLS
	// SotW uses state-of-the-world ADS instead of the files' delta ADS.
	SotW bool
	// MaxHeapBytes replaces the overload manager's heap limit when set.
	MaxHeapBytes uint64
}

// ClientTLS is a gateway's mutual TLS toward the agent: its SVID (files,
// reloaded when their folder changes), the trust bundle, and the agent's
// SPIFFE ID it must see.
type ClientTLS struct {
	CertFile, KeyFile, BundleFile string
	AgentID                       string
}

// Load returns the bootstrap file name ("egress.yaml" or "ingress.yaml"),
// parsed and validated by ParseBootstrap.
func Load(name string) (*bootstrapv3.Bootstrap, error) {
	raw, err := files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return ParseBootstrap(raw)
}

// Render is the bootstrap file name with p applied, marshaled.
func Render(name string, p Params) ([]byte, error) {
	b, err := Load(name)
	if err != nil {
		return nil, err
	}
	if err := Apply(b, p); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return Marshal(b)
}

// Marshal writes b as JSON, which Envoy reads as YAML.
func Marshal(b *bootstrapv3.Bootstrap) ([]byte, error) {
	return protojson.MarshalOptions{Multiline: true}.Marshal(b)
}

// Apply sets p on b.
func Apply(b *bootstrapv3.Bootstrap, p Params) error {
	if p.NodeID != "" {
		b.GetNode().Id = p.NodeID
	}
	if err := applyAdmin(b, p); err != nil {
		return err
	}
	if p.SotW {
		b.GetDynamicResources().GetAdsConfig().ApiType = core.ApiConfigSource_GRPC
	}
	if p.MaxHeapBytes != 0 {
		if err := setMaxHeap(b, p.MaxHeapBytes); err != nil {
			return err
		}
	}
	if p.XDS != "" {
		c := xdsCluster(b)
		if c == nil {
			return fmt.Errorf("no static cluster %q", XDSClusterName)
		}
		if err := pointAt(c, p.XDS); err != nil {
			return fmt.Errorf("xds %q: %w", p.XDS, err)
		}
	}
	if p.XDSTLS != nil {
		xdsCluster(b).TransportSocket = p.XDSTLS.transportSocket()
	}
	return nil
}

// applyAdmin moves the admin interface, the cluster the prometheus
// listener reaches it by, and the prometheus listener.
func applyAdmin(b *bootstrapv3.Bootstrap, p Params) error {
	if p.Admin != "" {
		addr, err := tcpAddress(p.Admin)
		if err != nil {
			return fmt.Errorf("admin %q: %w", p.Admin, err)
		}
		b.GetAdmin().Address = addr
		sr := b.GetStaticResources()
		if addr.GetSocketAddress().GetPortValue() == 0 {
			sr.Listeners = slices.DeleteFunc(sr.Listeners, func(l *listenerv3.Listener) bool { return l.GetName() == PrometheusListenerName })
			sr.Clusters = slices.DeleteFunc(sr.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == adminClusterName })
		} else if c := cluster(b, adminClusterName); c != nil {
			c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address = addr
		}
	}
	if p.Stats != "" {
		addr, err := tcpAddress(p.Stats)
		if err != nil {
			return fmt.Errorf("stats %q: %w", p.Stats, err)
		}
		for _, l := range b.GetStaticResources().GetListeners() {
			if l.GetName() == PrometheusListenerName {
				l.Address = addr
			}
		}
	}
	return nil
}

func (t *ClientTLS) transportSocket() *core.TransportSocket {
	file := func(path string) *core.DataSource {
		return &core.DataSource{Specifier: &core.DataSource_Filename{Filename: path}}
	}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: file(t.CertFile),
			PrivateKey:       file(t.KeyFile),
			WatchedDirectory: &core.WatchedDirectory{Path: filepath.Dir(t.CertFile)},
		}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: file(t.BundleFile),
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_URI,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.AgentID}},
			}},
		}},
	}}
	a, err := anypb.New(ctx)
	if err != nil {
		panic(err) // a well-formed message always marshals
	}
	return &core.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: a}}
}

func xdsCluster(b *bootstrapv3.Bootstrap) *clusterv3.Cluster { return cluster(b, XDSClusterName) }

func cluster(b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// pointAt makes c reach address: host:port (resolved by DNS when a name),
// or a Unix socket given as unix:///path.
func pointAt(c *clusterv3.Cluster, address string) error {
	var addr *core.Address
	if path, ok := strings.CutPrefix(address, "unix://"); ok {
		addr = &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: path}}}
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		var err error
		if addr, err = tcpAddress(address); err != nil {
			return err
		}
		// An IP or a host name (the agent's service name, say).
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
	}
	c.LoadAssignment = &endpoint.ClusterLoadAssignment{
		ClusterName: c.GetName(),
		Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: addr}},
		}}}},
	}
	return nil
}

func tcpAddress(hostPort string) (*core.Address, error) {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       host,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(n)},
	}}}, nil
}

// setMaxHeap sets the fixed heap monitor's limit.
func setMaxHeap(b *bootstrapv3.Bootstrap, bytes uint64) error {
	for _, m := range b.GetOverloadManager().GetResourceMonitors() {
		if m.GetName() != "envoy.resource_monitors.fixed_heap" {
			continue
		}
		cfg := &fixedheapv3.FixedHeapConfig{}
		if err := m.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			return fmt.Errorf("fixed heap monitor: %w", err)
		}
		cfg.MaxHeapSizeBytes = bytes
		a, err := anypb.New(cfg)
		if err != nil {
			return err
		}
		m.ConfigType = &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: a}
		return nil
	}
	return errors.New("no fixed heap resource monitor to set the limit of")
}
