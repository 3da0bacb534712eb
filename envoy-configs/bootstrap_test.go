package envoyconfigs

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/stretchr/testify/require"
)

// gatewayClusters maps the node id of each of meshfed's gateways to its
// node cluster.
var gatewayClusters = map[string]string{
	"egress-gateway":  "meshfed-egress",
	"ingress-gateway": "meshfed-ingress",
}

// TestBootstrapFiles checks every bootstrap in this folder, so a new file is
// covered as soon as it is added.
func TestBootstrapFiles(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no *.yaml bootstrap files in envoy-configs")

	adminPorts := make(map[uint32]string)
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			// Strict decoding, the v3 validation rules (also inside typed
			// configs), and the ADS cluster being a static cluster.
			b, err := ParseBootstrap(raw)
			require.NoError(t, err)

			id := b.GetNode().GetId()
			cluster, known := gatewayClusters[id]
			require.Truef(t, known, "node id %q is not one of meshfed's gateways", id)
			require.Equal(t, cluster, b.GetNode().GetCluster(), "node cluster")

			port := requireLoopbackAdmin(t, b)
			require.NotContainsf(t, adminPorts, port, "admin port %d is used by %s too", port, adminPorts[port])
			adminPorts[port] = file

			ads := b.GetDynamicResources().GetAdsConfig()
			require.NotNil(t, ads, "dynamic_resources.ads_config")
			require.Len(t, ads.GetGrpcServices(), 1)
			require.NotEmpty(t, ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName(), "ads_config must use an envoy_grpc cluster")
			require.NotNil(t, b.GetDynamicResources().GetCdsConfig().GetAds(), "cds_config must come over ADS")
			require.NotNil(t, b.GetDynamicResources().GetLdsConfig().GetAds(), "lds_config must come over ADS")
		})
	}
}

// requireLoopbackAdmin checks that the admin interface listens on a loopback
// IP only, and returns its port.
func requireLoopbackAdmin(t *testing.T, b *bootstrapv3.Bootstrap) uint32 {
	t.Helper()
	sa := b.GetAdmin().GetAddress().GetSocketAddress()
	require.NotNil(t, sa, "admin.address.socket_address")
	ip, err := netip.ParseAddr(sa.GetAddress())
	require.NoError(t, err, "admin address must be an IP")
	require.Truef(t, ip.IsLoopback(), "admin binds to %s, not to loopback", ip)
	return sa.GetPortValue()
}

func TestParseBootstrapErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		// errs are all in the error. A protojson error is checked without
		// its "proto: " prefix, whose space protobuf-go randomizes per build.
		errs []string
	}{
		{
			name: "unknown field",
			yaml: `
node: {id: egress-gateway, cluster: meshfed-egress}
admin_port: 19000
`,
			errs: []string{"decoding bootstrap: proto:", `unknown field "admin_port"`},
		},
		{
			name: "unknown field inside a typed config",
			yaml: `
overload_manager:
  resource_monitors:
    - name: envoy.resource_monitors.fixed_heap
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
        max_heap_bytes: 1073741824
`,
			errs: []string{"decoding bootstrap: proto:", `unknown field "max_heap_bytes"`},
		},
		{
			name: "typed config of a type not linked in",
			yaml: `
overload_manager:
  resource_monitors:
    - name: example.resource_monitor
      typed_config:
        "@type": type.googleapis.com/example.NotARealMonitor
`,
			errs: []string{"decoding bootstrap: proto:", `unable to resolve "type.googleapis.com/example.NotARealMonitor": "not found"`},
		},
		{
			name: "cluster with an empty name",
			yaml: `
static_resources:
  clusters:
    - name: ""
      connect_timeout: 1s
`,
			errs: []string{`invalid bootstrap: invalid Bootstrap.StaticResources: embedded message failed validation | caused by: invalid Bootstrap_StaticResources.Clusters[0]: embedded message failed validation | caused by: invalid Cluster.Name: value length must be at least 1 runes`},
		},
		{
			name: "invalid typed config inside an Any",
			yaml: `
admin:
  access_log:
    - name: envoy.access_loggers.file
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
        path: ""
`,
			errs: []string{`invalid bootstrap: type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog: invalid FileAccessLog.Path: value length must be at least 1 runes`},
		},
		{
			name: "ADS cluster not defined",
			yaml: `
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services:
      - envoy_grpc: {cluster_name: meshfed-xds}
static_resources:
  clusters:
    - name: xds
      connect_timeout: 1s
`,
			errs: []string{`invalid bootstrap: ads_config uses cluster "meshfed-xds", which is not in static_resources.clusters`},
		},
		{
			name: "not YAML",
			yaml: "node: [",
			errs: []string{"bootstrap YAML: yaml: line 1: did not find expected node content"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParseBootstrap([]byte(tc.yaml))
			for _, want := range tc.errs {
				require.ErrorContains(t, err, want)
			}
			require.Nil(t, b)
		})
	}
}
