package snapshot_test

import (
	"slices"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
)

// checkBase is a valid resource set with every kind of resource.
func checkBase(t *testing.T) *snapshot.Resources {
	t.Helper()
	res := snapshot.Build(loadInput(t, "testdata/in/rotation.yaml"))
	mustCheck(t, res)
	return res
}

func find(t *testing.T, res *snapshot.Resources, role model.Role, typ resource.Type, name string) types.Resource {
	t.Helper()
	for _, r := range res.ByRole[role][typ] {
		if snapshot.Name(r) == name {
			return r
		}
	}
	t.Fatalf("no %s %s %q", role, typ, name)
	return nil
}

func remove(t *testing.T, res *snapshot.Resources, role model.Role, typ resource.Type, name string) {
	t.Helper()
	find(t, res, role, typ, name)
	res.ByRole[role][typ] = slices.DeleteFunc(res.ByRole[role][typ], func(r types.Resource) bool { return snapshot.Name(r) == name })
}

func TestCheckValidates(t *testing.T) {
	res := checkBase(t)
	l := find(t, res, model.Egress, resource.ListenerType, snapshot.EgressHTTPName(8080)).(*listener.Listener)
	l.Address.GetSocketAddress().PortSpecifier = &core.SocketAddress_PortValue{PortValue: 70000}
	require.ErrorContains(t, snapshot.Check(res), `egress: listener "egress/http/8080": invalid: invalid Listener.Address: embedded message failed validation | caused by: invalid Address.SocketAddress: embedded message failed validation | caused by: invalid SocketAddress.PortValue: value must be less than or equal to 65535`)
}

func TestCheckValidatesTypedConfigs(t *testing.T) {
	res := checkBase(t)
	l := find(t, res, model.Egress, resource.ListenerType, "egress/mesh-b/payments/tcp").(*listener.Listener)
	l.FilterChains[0].Filters[0] = snapshot.TCPProxy("")
	err := snapshot.Check(res)
	require.ErrorContains(t, err, `egress: listener "egress/mesh-b/payments/tcp" filter chain "": invalid envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy: invalid TcpProxy.StatPrefix: value length must be at least 1 runes`)
}

// upstreamOf is the cluster the routing scope name routes to.
func upstreamOf(t *testing.T, res *snapshot.Resources, name string) string {
	t.Helper()
	sc := find(t, res, model.Egress, resource.ScopedRouteType, name).(*route.ScopedRouteConfiguration)
	up := sc.GetRouteConfiguration().GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster()
	require.True(t, strings.HasPrefix(up, "upstream/"), up)
	return up
}

func TestCheckDuplicateName(t *testing.T) {
	res := checkBase(t)
	up := upstreamOf(t, res, "egress/mesh-b/payments/http")
	c := find(t, res, model.Egress, resource.ClusterType, up)
	res.ByRole[model.Egress][resource.ClusterType] = append(res.ByRole[model.Egress][resource.ClusterType], proto.Clone(c))
	require.EqualError(t, snapshot.Check(res), `egress: duplicate cluster "`+up+`"`)
}

func TestCheckRouteToUnknownCluster(t *testing.T) {
	res := checkBase(t)
	up := upstreamOf(t, res, "egress/mesh-b/payments/http")
	remove(t, res, model.Egress, resource.ClusterType, up)
	// The import's three instances share the cluster.
	require.EqualError(t, snapshot.Check(res), `egress: route configuration "egress/mesh-b/payments/http" virtual host "egress/mesh-b/payments/http" routes to cluster "`+up+`" which does not exist
egress: listener "egress/mesh-b/payments/tcp" filter chain "" routes to cluster "`+up+`" which does not exist
egress: listener "egress/mesh-b/payments/tls" filter chain "" routes to cluster "`+up+`" which does not exist`)
}

func TestCheckTCPProxyToUnknownCluster(t *testing.T) {
	res := checkBase(t)
	remove(t, res, model.Ingress, resource.ClusterType, "ingress/kafka/tls")
	require.EqualError(t, snapshot.Check(res), `ingress: listener "ingress/tls" filter chain "ingress/kafka/tls" routes to cluster "ingress/kafka/tls" which does not exist`)
}

func TestCheckEDSWithoutLoadAssignment(t *testing.T) {
	res := checkBase(t)
	remove(t, res, model.Ingress, resource.EndpointType, "ingress/orders/http")
	require.EqualError(t, snapshot.Check(res), `ingress: cluster "ingress/orders/http" is EDS but ClusterLoadAssignment "ingress/orders/http" does not exist`)
}

func TestCheckUnknownSecret(t *testing.T) {
	res := checkBase(t)
	remove(t, res, model.Ingress, resource.SecretType, "meshfed/validator/mesh-b_2eexample/mesh-c_2eexample")
	require.EqualError(t, snapshot.Check(res), `ingress: listener "ingress/tls" filter chain "consumers/_4desh_2e_43/mesh-b" references secret "meshfed/validator/mesh-b_2eexample/mesh-c_2eexample" which does not exist`)

	res = checkBase(t)
	remove(t, res, model.Egress, resource.SecretType, "meshfed/bundle/mesh-c_2eexample")
	up := upstreamOf(t, res, "egress/_4desh_2e_43/shipping/http")
	require.EqualError(t, snapshot.Check(res), `egress: cluster "`+up+`" references secret "meshfed/bundle/mesh-c_2eexample" which does not exist`)
}

func TestCheckUnknownRouteConfiguration(t *testing.T) {
	res := checkBase(t)
	sc := find(t, res, model.Egress, resource.ScopedRouteType, "egress/mesh-b/payments/http").(*route.ScopedRouteConfiguration)
	sc.RouteConfiguration, sc.RouteConfigurationName = nil, "elsewhere"
	require.EqualError(t, snapshot.Check(res), `egress: scoped route configuration "egress/mesh-b/payments/http" fetches route configuration "elsewhere" which does not exist`)
}

// Envoy refuses two scopes with one key: two hosts, one listener each.
func TestCheckDuplicateScopeKey(t *testing.T) {
	res := checkBase(t)
	a := find(t, res, model.Egress, resource.ScopedRouteType, "egress/_4desh_2e_43/shipping/http").(*route.ScopedRouteConfiguration)
	b := find(t, res, model.Egress, resource.ScopedRouteType, "egress/mesh-b/payments/http").(*route.ScopedRouteConfiguration)
	b.Key = a.Key
	require.EqualError(t, snapshot.Check(res), `egress: scoped route configuration "egress/mesh-b/payments/http": key "shipping.mesh-c.example:8080" is the key of scoped route configuration "egress/_4desh_2e_43/shipping/http" too`)
}

func TestCheckDuplicateVirtualHost(t *testing.T) {
	res := checkBase(t)
	sc := find(t, res, model.Egress, resource.ScopedRouteType, "egress/mesh-b/payments/http").(*route.ScopedRouteConfiguration)
	rc := sc.RouteConfiguration
	other := proto.Clone(rc.VirtualHosts[0]).(*route.VirtualHost)
	other.Domains = []string{"elsewhere.example"}
	rc.VirtualHosts = append(rc.VirtualHosts, other)
	require.EqualError(t, snapshot.Check(res), `egress: route configuration "egress/mesh-b/payments/http": duplicate virtual host "egress/mesh-b/payments/http"`)

	other.Name = "another"
	other.Domains = rc.VirtualHosts[0].Domains[:1]
	require.EqualError(t, snapshot.Check(res), `egress: route configuration "egress/mesh-b/payments/http": domain "payments.mesh-b.example" is in virtual hosts "egress/mesh-b/payments/http" and "another"`)
}

func TestCheckFilterChainOverlap(t *testing.T) {
	res := checkBase(t)
	l := find(t, res, model.Egress, resource.ListenerType, "egress/mesh-b/payments/tcp").(*listener.Listener)
	require.Len(t, l.FilterChains, 1)
	other := proto.Clone(l.FilterChains[0]).(*listener.FilterChain)
	other.Name = "another"
	l.FilterChains = append(l.FilterChains, other)
	require.EqualError(t, snapshot.Check(res), `egress: listener "egress/mesh-b/payments/tcp": filter chains "" and "another" overlap on any server name`)
}

// Envoy refuses a listener whose matcher selects a chain it lacks, or with
// two chains of one name; the ingress listeners' chains have no match of
// their own, so they never overlap.
func TestCheckFilterChainMatcher(t *testing.T) {
	res := checkBase(t)
	l := find(t, res, model.Ingress, resource.ListenerType, snapshot.IngressRouterName).(*listener.Listener)
	require.Len(t, l.FilterChains, 1)
	l.FilterChains[0] = proto.Clone(l.FilterChains[0]).(*listener.FilterChain)
	l.FilterChains[0].Name = "renamed"
	require.EqualError(t, snapshot.Check(res), `ingress: listener "ingress/router": its filter chain matcher selects filter chain "ingress/orders/http" which does not exist`)

	res = checkBase(t)
	l = find(t, res, model.Ingress, resource.ListenerType, snapshot.IngressTLSName).(*listener.Listener)
	l.FilterChains = append(l.FilterChains, proto.Clone(l.FilterChains[0]).(*listener.FilterChain))
	require.EqualError(t, snapshot.Check(res), `ingress: listener "ingress/tls": duplicate filter chain "consumers/_4desh_2e_43/mesh-b"`)
}

// The router cluster leads to the router listener.
func TestCheckUnknownInternalListener(t *testing.T) {
	res := checkBase(t)
	remove(t, res, model.Ingress, resource.ListenerType, snapshot.IngressRouterName)
	require.EqualError(t, snapshot.Check(res), `ingress: cluster "ingress/router" leads to listener "ingress/router" which does not exist`)
}

func TestCheckSameAddress(t *testing.T) {
	res := checkBase(t)
	l := find(t, res, model.Egress, resource.ListenerType, "egress/mesh-b/payments/tls").(*listener.Listener)
	l.Address = snapshot.SocketAddress_("0.0.0.0", 8080)
	require.EqualError(t, snapshot.Check(res), `egress: listeners "egress/http/8080" and "egress/mesh-b/payments/tls" both bind 0.0.0.0:8080`)
}

func TestCheckListenerWithoutFilterChains(t *testing.T) {
	res := checkBase(t)
	l := find(t, res, model.Egress, resource.ListenerType, "egress/mesh-b/payments/tcp").(*listener.Listener)
	l.FilterChains = nil
	require.EqualError(t, snapshot.Check(res), `egress: listener "egress/mesh-b/payments/tcp" has no filter chains`)
}

func TestCheckWrongType(t *testing.T) {
	res := checkBase(t)
	res.ByRole[model.Ingress][resource.ClusterType] = append(res.ByRole[model.Ingress][resource.ClusterType], &route.RouteConfiguration{Name: "x"})
	require.ErrorContains(t, snapshot.Check(res), `ingress: cluster type holds a *routev3.RouteConfiguration`)
}
