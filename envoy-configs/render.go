package envoyconfigs

import (
	"embed"
	"fmt"
	"net"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

//go:embed egress.yaml ingress.yaml
var files embed.FS

// XDSClusterName is the static cluster of every bootstrap that reaches the
// agent's ADS endpoint.
const XDSClusterName = "meshfed-xds"

// Params are what differs between two gateways made from the same file:
// what tests, the demo and the bench set so that several gateways run on
// one host.
type Params struct {
	// NodeID replaces node.id when set.
	NodeID string
	// Admin replaces the admin address (host:port, loopback); port 0 lets
	// Envoy choose (run it with --admin-address-path to learn it).
	Admin string
	// XDS is the agent's ADS endpoint: host:port, or unix:///path.
	XDS string
	// SotW uses state-of-the-world ADS instead of the files' delta ADS.
	SotW bool
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
	if p.Admin != "" {
		addr, err := tcpAddress(p.Admin)
		if err != nil {
			return fmt.Errorf("admin %q: %w", p.Admin, err)
		}
		b.GetAdmin().Address = addr
	}
	if p.SotW {
		b.GetDynamicResources().GetAdsConfig().ApiType = core.ApiConfigSource_GRPC
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
	return nil
}

func xdsCluster(b *bootstrapv3.Bootstrap) *clusterv3.Cluster {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == XDSClusterName {
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
