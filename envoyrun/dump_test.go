package envoyrun

import (
	"slices"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func packed(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	require.NoError(t, err)
	return a
}

// The name is field 1 wherever it stands in the bytes, after fields of
// every wire type.
func TestResourceName(t *testing.T) {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: "egress/mesh-b/web/http"}
	require.Equal(t, "egress/mesh-b/web/http", ResourceName(packed(t, cla)))

	var b []byte
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 300)
	b = protowire.AppendTag(b, 3, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 7)
	b = protowire.AppendTag(b, 4, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 7)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendString(b, "not the name")
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "the name")
	require.Equal(t, "the name", ResourceName(&anypb.Any{Value: b}))
	require.Empty(t, ResourceName(&anypb.Any{Value: b[:len(b)-1]}), "a name cut short")
}

func TestAppliedResources(t *testing.T) {
	dump := &adminv3.ConfigDump{Configs: []*anypb.Any{
		packed(t, &adminv3.ClustersConfigDump{
			DynamicActiveClusters:  []*adminv3.ClustersConfigDump_DynamicCluster{{VersionInfo: "v1", Cluster: packed(t, &cluster.Cluster{Name: "c"})}},
			DynamicWarmingClusters: []*adminv3.ClustersConfigDump_DynamicCluster{{VersionInfo: "v2", Cluster: packed(t, &cluster.Cluster{Name: "w"})}},
		}),
		packed(t, &adminv3.ListenersConfigDump{DynamicListeners: []*adminv3.ListenersConfigDump_DynamicListener{{
			Name: "l", ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: "v3", Listener: packed(t, &listener.Listener{Name: "l"})},
		}}}),
		packed(t, &adminv3.ScopedRoutesConfigDump{DynamicScopedRouteConfigs: []*adminv3.ScopedRoutesConfigDump_DynamicScopedRouteConfigs{{
			Name: "egress/http", VersionInfo: "v4",
			ScopedRouteConfigs: []*anypb.Any{packed(t, &route.ScopedRouteConfiguration{Name: "a"}), packed(t, &route.ScopedRouteConfiguration{Name: "b"})},
		}}}),
	}}
	got, err := AppliedResources(dump)
	require.EqualError(t, err, `cluster "w" is warming`)
	require.Equal(t, []string{"c"}, keys(got[resource.ClusterType]))
	require.Equal(t, "v1", got[resource.ClusterType]["c"].Version)
	require.Equal(t, "v3", got[resource.ListenerType]["l"].Version)
	require.Equal(t, []string{"a", "b"}, keys(got[resource.ScopedRouteType]))
	require.Equal(t, "v4", got[resource.ScopedRouteType]["b"].Version, "the version of the scopes' last update")
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
