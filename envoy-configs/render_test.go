package envoyconfigs

import (
	"testing"

	fixedheapv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/stretchr/testify/require"
)

func TestRenderSetsParams(t *testing.T) {
	for _, name := range []string{"egress.yaml", "ingress.yaml"} {
		t.Run(name, func(t *testing.T) {
			out, err := Render(name, Params{NodeID: "gw-1", Admin: "127.0.0.1:0", XDS: "127.0.0.1:18100", SotW: true})
			require.NoError(t, err)
			b, err := ParseBootstrap(out)
			require.NoError(t, err)
			require.Equal(t, "gw-1", b.GetNode().GetId())
			require.Equal(t, uint32(0), b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue())
			require.Equal(t, core.ApiConfigSource_GRPC, b.GetDynamicResources().GetAdsConfig().GetApiType())
			sa := xdsCluster(b).GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			require.Equal(t, "127.0.0.1", sa.GetAddress())
			require.Equal(t, uint32(18100), sa.GetPortValue())
		})
	}
}

func TestRenderDefaultsToDeltaADS(t *testing.T) {
	b, err := Load("egress.yaml")
	require.NoError(t, err)
	require.Equal(t, core.ApiConfigSource_DELTA_GRPC, b.GetDynamicResources().GetAdsConfig().GetApiType())
}

func TestRenderUnixSocket(t *testing.T) {
	out, err := Render("ingress.yaml", Params{XDS: "unix:///run/meshfed/xds.sock"})
	require.NoError(t, err)
	b, err := ParseBootstrap(out)
	require.NoError(t, err)
	c := xdsCluster(b)
	require.Equal(t, "/run/meshfed/xds.sock", c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe().GetPath())
	require.Equal(t, "STATIC", c.GetType().String())
}

func TestRenderErrors(t *testing.T) {
	_, err := Render("egress.yaml", Params{XDS: "127.0.0.1"})
	require.ErrorContains(t, err, `egress.yaml: xds "127.0.0.1": address 127.0.0.1: missing port in address`)
	_, err = Render("egress.yaml", Params{Admin: "127.0.0.1:http"})
	require.ErrorContains(t, err, `egress.yaml: admin "127.0.0.1:http": port "http" is not a number from 0 to 65535`)
	_, err = Render("other.yaml", Params{})
	require.ErrorContains(t, err, "open other.yaml: file does not exist")
}

func TestRenderXDSOverMutualTLS(t *testing.T) {
	out, err := Render("egress.yaml", Params{XDS: "agent.mesh-a:18000", XDSTLS: &ClientTLS{
		CertFile: "/certs/egress.pem", KeyFile: "/certs/egress-key.pem", BundleFile: "/certs/bundle.pem", AgentID: "spiffe://mesh-a.example/meshfed/agent",
	}})
	require.NoError(t, err)
	b, err := ParseBootstrap(out)
	require.NoError(t, err)
	c := xdsCluster(b)
	require.Equal(t, "STRICT_DNS", c.GetType().String())
	ctx := &tlsv3.UpstreamTlsContext{}
	require.NoError(t, c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx))
	cert := ctx.GetCommonTlsContext().GetTlsCertificates()[0]
	require.Equal(t, "/certs/egress-key.pem", cert.GetPrivateKey().GetFilename())
	require.Equal(t, "/certs", cert.GetWatchedDirectory().GetPath(), "a rotated SVID is reloaded")
	vc := ctx.GetCommonTlsContext().GetValidationContext()
	require.Equal(t, "/certs/bundle.pem", vc.GetTrustedCa().GetFilename())
	require.Equal(t, "spiffe://mesh-a.example/meshfed/agent", vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact())
}

// The prometheus listener reaches the admin interface through a cluster
// that follows it; with a port Envoy picks, neither can know it, so both go.
func TestRenderPrometheusFollowsTheAdmin(t *testing.T) {
	out, err := Render("ingress.yaml", Params{Admin: "127.0.0.1:19500", Stats: "10.0.0.7:15091"})
	require.NoError(t, err)
	b, err := ParseBootstrap(out)
	require.NoError(t, err)
	require.Equal(t, uint32(19500), cluster(b, adminClusterName).GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue())
	require.Equal(t, "10.0.0.7", b.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetAddress())

	out, err = Render("ingress.yaml", Params{Admin: "127.0.0.1:0"})
	require.NoError(t, err)
	b, err = ParseBootstrap(out)
	require.NoError(t, err)
	require.Empty(t, b.GetStaticResources().GetListeners())
	require.Nil(t, cluster(b, adminClusterName))
}

func TestParseBootstrapRefusesDuplicateKeys(t *testing.T) {
	_, err := ParseBootstrap([]byte("node: {id: a}\nnode: {id: b}\n"))
	require.ErrorContains(t, err, "bootstrap YAML: yaml: unmarshal errors:\n  line 2: key \"node\" already set in map")
}

func TestRenderSetsTheHeapLimit(t *testing.T) {
	out, err := Render("egress.yaml", Params{MaxHeapBytes: 4 << 30})
	require.NoError(t, err)
	b, err := ParseBootstrap(out)
	require.NoError(t, err)
	cfg := &fixedheapv3.FixedHeapConfig{}
	require.NoError(t, b.GetOverloadManager().GetResourceMonitors()[0].GetTypedConfig().UnmarshalTo(cfg))
	require.Equal(t, uint64(4<<30), cfg.GetMaxHeapSizeBytes())
}
