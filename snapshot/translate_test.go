package snapshot_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	setfilterstate "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/set_filter_state/v3"
	setfilterstatehttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_filter_state/v3"
	setfilterstatenet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/set_filter_state/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/snapshottest"
)

func TestBuildIsDeterministic(t *testing.T) {
	in := loadInput(t, "testdata/in/rotation.yaml")
	first := render(t, snapshot.Build(in))
	for range 5 {
		require.Equal(t, string(first), string(render(t, snapshot.Build(in))))
	}
}

// A rotation changes secret contents only: every name, and every resource
// other than a secret, stays as it was, so no listener or cluster drains.
func TestRotation(t *testing.T) {
	before := loadInput(t, "testdata/in/rotation.yaml")
	after := loadInput(t, "testdata/in/rotation.yaml")
	for role, svid := range after.Secrets.SVIDs {
		svid.CertChain = strings.Replace(svid.CertChain, "SVID", "SVID ROTATED", 1)
		svid.PrivateKey = "-----BEGIN PRIVATE KEY-----\nROTATED\n-----END PRIVATE KEY-----\n"
		after.Secrets.SVIDs[role] = svid
	}
	for td, pem := range after.Secrets.Bundles {
		after.Secrets.Bundles[td] = pem + "-----BEGIN CERTIFICATE-----\nNEXT CA\n-----END CERTIFICATE-----\n"
	}
	old, cur := snapshot.Build(before), snapshot.Build(after)
	mustCheck(t, old)
	mustCheck(t, cur)

	secretsChanged := 0
	for _, role := range model.GatewayRoles {
		for _, typ := range snapshot.Types {
			o, c := old.ByRole[role][typ], cur.ByRole[role][typ]
			require.Equal(t, len(o), len(c), "%s %s", role, typ)
			for i := range o {
				require.Equal(t, snapshot.Name(o[i]), snapshot.Name(c[i]), "%s %s", role, typ)
				if typ != resource.SecretType {
					assertProtoEqual(t, o[i], c[i])
					continue
				}
				assert.False(t, proto.Equal(o[i], c[i]), "secret %s did not change", snapshot.Name(o[i]))
				secretsChanged++
			}
		}
	}
	// egress: SVID and two bundles; ingress: SVID and one validator.
	require.Equal(t, 5, secretsChanged)
}

func TestEgressResourcesOneService(t *testing.T) {
	in := loadInput(t, "testdata/in/http2-grpc.yaml")
	sr := egressOf(in, 0)
	// Three instances on the same endpoints share two upstreams: HTTP/1.1
	// and HTTP/2.
	h1, h2 := upstreamName(t, sr, false), upstreamName(t, sr, true)
	require.Len(t, sr.Clusters, 2)
	// An import's cluster carries its endpoints, the owner's ingress.
	require.Empty(t, sr.Endpoints)
	for _, c := range sr.Clusters {
		require.Equal(t, cluster.Cluster_STATIC, c.GetType(), c.GetName())
		require.NotEmpty(t, c.GetLoadAssignment().GetEndpoints(), c.GetName())
	}
	require.Empty(t, sr.Listeners)

	want := []snapshot.HostRoute{
		{8080, snapshot.EgressScope("inventory.mesh-b.example", 8080, snapshot.VirtualHost("egress/mesh-b/inventory/api", h1, model.DefaultSNI(8080, "inventory.mesh-b.example"), []string{"inventory.mesh-b.example", "inventory.mesh-b.example:8080"}, "", false, 0))},
		{80, snapshot.EgressScope("inventory.mesh-b.example", 80, snapshot.VirtualHost("egress/mesh-b/inventory/grpc", h2, model.DefaultSNI(80, "inventory.mesh-b.example"), []string{"inventory.mesh-b.example", "inventory.mesh-b.example:80"}, "", true, 0))},
	}
	assertProtoEqual(t, want, sr.HostRoutes)

	// The same service inside Build: identical resources.
	res := snapshot.Build(in)
	for _, c := range sr.Clusters {
		found := false
		for _, r := range res.ByRole[model.Egress][resource.ClusterType] {
			if snapshot.Name(r) == c.GetName() {
				assertProtoEqual(t, c, r)
				found = true
			}
		}
		require.True(t, found, c.GetName())
	}
}

// upstreamName is the name of the cluster of sr that speaks HTTP/2
// upstream, or of the one that does not.
func upstreamName(t *testing.T, sr snapshot.ServiceResources, http2 bool) string {
	t.Helper()
	for _, c := range sr.Clusters {
		if (len(c.GetTypedExtensionProtocolOptions()) > 0) == http2 {
			return c.GetName()
		}
	}
	t.Fatalf("no cluster with http2 %v", http2)
	return ""
}

// Imports on the same upstream (endpoints in any order, SANs, protocol)
// share one cluster, whoever the owner says they are; another endpoint,
// SAN or protocol is another cluster.
func TestImportsShareTheirUpstream(t *testing.T) {
	in := loadInput(t, "testdata/in/http2-grpc.yaml")
	base := in.Imports[0]
	base.Service.Endpoints = []model.Endpoint{{Address: "203.0.113.10", Port: 15443}, {Address: "203.0.113.11", Port: 15443}}
	base.Service.Instances = []model.Instance{{ID: "api", Protocol: model.HTTP, Port: 8080}}
	other := base
	other.ResourceID, other.LocalFQDN = "orders", "orders.mesh-b.example"
	other.Service.Name, other.Service.FQDN = "orders", "orders.mesh-b.example"
	other.Service.Endpoints = []model.Endpoint{base.Service.Endpoints[1], base.Service.Endpoints[0]}
	other.Service.Instances = []model.Instance{{ID: "db", Protocol: model.TCP, Port: 5432}}
	in.Imports = []model.Import{base, other}
	in.EgressPorts = map[string]uint32{snapshot.EgressKey("mesh-b", "orders", "db"): 20000}
	a, b := egressOf(in, 0), egressOf(in, 1)
	require.Len(t, a.Clusters, 1)
	assertProtoEqual(t, a.Clusters, b.Clusters)
	require.Len(t, snapshot.Build(in).ByRole[model.Egress][resource.ClusterType], 1)

	differ := map[string]func(*model.Import){
		"endpoint": func(i *model.Import) { i.Service.Endpoints = i.Service.Endpoints[:1] },
		"SAN":      func(i *model.Import) { i.Service.SANs = []string{"spiffe://mesh-b.example/ns/federation/sa/other"} },
		"protocol": func(i *model.Import) { i.Service.Instances[0].Protocol = model.GRPC },
	}
	for what, change := range differ {
		imp := other
		imp.Service.Endpoints = slices.Clone(other.Service.Endpoints)
		imp.Service.Instances = slices.Clone(other.Service.Instances)
		change(&imp)
		in.Imports[1] = imp
		c := egressOf(in, 1).Clusters
		require.Len(t, c, 1, what)
		require.NotEqual(t, a.Clusters[0].GetName(), c[0].GetName(), what)
	}
}

// An instance's SNI is set by its listener or its routes, in the filter
// state Envoy takes the upstream SNI from; the shared cluster has none
// and checks the owner's SANs.
func TestEgressSNIAndTLS(t *testing.T) {
	in := loadInput(t, "testdata/in/sni.yaml")
	sr := egressOf(in, 0)
	require.Len(t, sr.Clusters, 1)
	for _, c := range sr.Clusters {
		ctx := &tls.UpstreamTlsContext{}
		require.NoError(t, c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx))
		require.Empty(t, ctx.GetSni())
		cvc := ctx.GetCommonTlsContext().GetCombinedValidationContext()
		require.Equal(t, "meshfed/bundle/mesh-c_2eexample", cvc.GetValidationContextSdsSecretConfig().GetName())
		require.Equal(t, "spiffe://mesh-c.example/gw/east", cvc.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact())
		require.Equal(t, "meshfed/svid/egress", ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName())
	}
	require.Equal(t, map[string]string{
		"egress/_4desh_2e_43/shipping/advertised": "shipping-8080.gw.mesh-c.example",
		"egress/_4desh_2e_43/shipping/default":    model.DefaultSNI(9000, "shipping.mesh-c.example"),
	}, snis(t, sr))
}

// snis are the upstream SNIs sr's listeners and routes set, by listener or
// route name.
func snis(t *testing.T, sr snapshot.ServiceResources) map[string]string {
	t.Helper()
	out := map[string]string{}
	value := func(vs []*setfilterstate.FilterStateValue) string {
		require.Len(t, vs, 1)
		require.Equal(t, "envoy.network.upstream_server_name", vs[0].GetObjectKey())
		return vs[0].GetFormatString().GetTextFormatSource().GetInlineString()
	}
	for _, l := range sr.Listeners {
		for _, f := range l.GetFilterChains()[0].GetFilters() {
			if f.GetName() == "envoy.filters.network.set_filter_state" {
				cfg := &setfilterstatenet.Config{}
				require.NoError(t, f.GetTypedConfig().UnmarshalTo(cfg))
				out[l.GetName()] = value(cfg.GetOnNewConnection())
			}
		}
	}
	for _, hr := range sr.HostRoutes {
		for _, vh := range hr.Scope.GetRouteConfiguration().GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				cfg := &setfilterstatehttp.Config{}
				require.NoError(t, r.GetTypedPerFilterConfig()["envoy.filters.http.set_filter_state"].UnmarshalTo(cfg), r.GetName())
				sni := value(cfg.GetOnRequestHeaders())
				if prev, ok := out[r.GetName()]; ok {
					require.Equal(t, prev, sni, "the routes of %s", r.GetName())
				}
				out[r.GetName()] = sni
			}
		}
	}
	return out
}

// A workload's own TLS (TLS, MTLS, HTTPS) is tunnelled inside the egress
// gateway's mTLS, with the SNI the owner advertised.
func TestTLSInstancesAreTunnelledInMTLS(t *testing.T) {
	in := loadInput(t, "testdata/in/passthrough.yaml")
	sr := egressOf(in, 0)
	require.Len(t, sr.Clusters, 1)
	require.Len(t, sr.Listeners, 3)
	ctx := &tls.UpstreamTlsContext{}
	require.NoError(t, sr.Clusters[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx))
	require.Equal(t, "meshfed/svid/egress", ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName())
	got := snis(t, sr)
	require.Len(t, got, 3)
	for name, sni := range got {
		require.Contains(t, sni, "vault", name)
	}
}

func TestHostnameEndpointsUseStrictDNS(t *testing.T) {
	in := loadInput(t, "testdata/in/hostnames.yaml")
	sr := egressOf(in, 0)
	require.Empty(t, sr.Endpoints)
	for _, c := range sr.Clusters {
		require.Equal(t, cluster.Cluster_STRICT_DNS, c.GetType())
		require.Len(t, c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints(), 2)
	}
}

// An instance is served on its own port, the first by id of a port has
// it, and one without a port is served on HTTP's.
func TestEgressHTTPPorts(t *testing.T) {
	in := &snapshot.Input{Settings: snapshottest.Settings(), Secrets: snapshottest.Secrets(t), Imports: []model.Import{{Peer: "mesh-b", ResourceID: "s", LocalFQDN: "s.example", Service: model.Service{
		FQDN: "s.example",
		Instances: []model.Instance{
			{ID: "a", Protocol: model.HTTP, Port: 8080},
			{ID: "b", Protocol: model.GRPC, Port: 8080},
			{ID: "c", Protocol: model.HTTP2},
			{ID: "d", Protocol: model.TCP, Port: 80},
		},
	}}}}
	sr := egressOf(in, 0)
	var got []string
	for _, r := range sr.HostRoutes {
		vh := r.Scope.GetRouteConfiguration().GetVirtualHosts()[0]
		got = append(got, fmt.Sprintf("%d %s %s %v", r.Port, r.Scope.GetKey().GetFragments()[0].GetStringKey(), vh.GetName(), vh.GetDomains()))
	}
	require.Equal(t, []string{
		"8080 s.example:8080 egress/mesh-b/s/a [s.example s.example:8080]",
		"80 s.example:80 egress/mesh-b/s/c [s.example s.example:80]",
	}, got)
	res := snapshot.Build(in)
	require.Empty(t, res.Rejected)
	var listeners []string
	for _, l := range res.ByRole[model.Egress][resource.ListenerType] {
		listeners = append(listeners, snapshot.Name(l))
	}
	require.Equal(t, []string{"egress/http/80", "egress/http/8080"}, listeners, "d has no port yet: no listener")
}

func TestSelectEndpoints(t *testing.T) {
	eps := []model.Endpoint{
		{Address: "10.0.0.2", Port: 1, Labels: []string{"a"}},
		{Address: "10.0.0.1", Port: 1, Labels: []string{"b", "a"}},
		{Address: "10.0.0.3", Port: 1, Labels: []string{"c"}},
	}
	all := []snapshot.HostPort{{"10.0.0.1", 1}, {"10.0.0.2", 1}, {"10.0.0.3", 1}}
	require.Equal(t, all, snapshot.SelectEndpoints(eps, nil))
	require.Equal(t, all, snapshot.SelectEndpoints(eps, []string{"z"}))
	require.Equal(t, []snapshot.HostPort{{"10.0.0.1", 1}, {"10.0.0.2", 1}}, snapshot.SelectEndpoints(eps, []string{"a"}))
	require.Equal(t, []snapshot.HostPort{{"10.0.0.1", 1}, {"10.0.0.3", 1}}, snapshot.SelectEndpoints(eps, []string{"b", "c"}))
}

func TestEgressPortKeys(t *testing.T) {
	in := loadInput(t, "testdata/in/rotation.yaml")
	require.Equal(t, []string{"mesh-b/payments/tcp", "mesh-b/payments/tls"}, snapshot.EgressPortKeys(in.Imports))
}

// egressOf is the i-th import's own resources.
func egressOf(in *snapshot.Input, i int) snapshot.ServiceResources {
	return snapshot.EgressResources(in.Settings, in.Secrets, in.Imports[i], in.EgressPorts)
}
