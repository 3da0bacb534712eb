package snapshot_test

import (
	"fmt"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
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
	require.Len(t, sr.Clusters, 3)
	require.Len(t, sr.Endpoints, 3)
	require.Empty(t, sr.Listeners)

	want := []snapshot.HostRoute{
		{8080, snapshot.EgressScope("inventory.mesh-b.example", 8080, snapshot.VirtualHost("egress/mesh-b/inventory/api", []string{"inventory.mesh-b.example", "inventory.mesh-b.example:8080"}, "", false, 0))},
		{80, snapshot.EgressScope("inventory.mesh-b.example", 80, snapshot.VirtualHost("egress/mesh-b/inventory/grpc", []string{"inventory.mesh-b.example", "inventory.mesh-b.example:80"}, "", true, 0))},
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

func TestEgressClusterTLS(t *testing.T) {
	in := loadInput(t, "testdata/in/sni.yaml")
	sr := egressOf(in, 0)
	require.Len(t, sr.Clusters, 2)
	sni := map[string]string{}
	for _, c := range sr.Clusters {
		ctx := &tls.UpstreamTlsContext{}
		require.NoError(t, c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx))
		sni[c.GetName()] = ctx.GetSni()
		cvc := ctx.GetCommonTlsContext().GetCombinedValidationContext()
		require.Equal(t, "meshfed/bundle/mesh-c_2eexample", cvc.GetValidationContextSdsSecretConfig().GetName())
		require.Equal(t, "spiffe://mesh-c.example/gw/east", cvc.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact())
		require.Equal(t, "meshfed/svid/egress", ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName())
	}
	require.Equal(t, map[string]string{
		"egress/_4desh_2e_43/shipping/advertised": "shipping-8080.gw.mesh-c.example",
		"egress/_4desh_2e_43/shipping/default":    model.DefaultSNI(9000, "shipping.mesh-c.example"),
	}, sni)
}

// A workload's own TLS (TLS, MTLS, HTTPS) is tunnelled inside the egress
// gateway's mTLS, with the SNI the owner advertised.
func TestTLSInstancesAreTunnelledInMTLS(t *testing.T) {
	in := loadInput(t, "testdata/in/passthrough.yaml")
	sr := egressOf(in, 0)
	require.Len(t, sr.Clusters, 3)
	require.Len(t, sr.Listeners, 3)
	for _, c := range sr.Clusters {
		ctx := &tls.UpstreamTlsContext{}
		require.NoError(t, c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx), c.GetName())
		require.Contains(t, ctx.GetSni(), "vault", c.GetName())
		require.Equal(t, "meshfed/svid/egress", ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName())
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
