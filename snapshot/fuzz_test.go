package snapshot_test

import (
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/snapshottest"
)

func FuzzBuild(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("meshfed federates service meshes over the Hamlet protocol"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := snapshottest.RandomInput(data)
		res := snapshot.Build(in)
		require.NoError(t, snapshot.Check(res))

		// Every imported instance has its own cluster, every exported port
		// of a served export one, and the ingress one more, its router's,
		// when an export ends TLS there: no two tuples met on one name.
		want := map[model.Role]int{}
		// An egress cluster per upstream, shared by the instances that
		// have it.
		upstreams := map[string]bool{}
		for _, imp := range in.Imports {
			for _, c := range snapshot.EgressResources(in.Settings, in.Secrets, imp, in.EgressPorts).Clusters {
				upstreams[c.GetName()] = true
			}
		}
		want[model.Egress] = len(upstreams)
		router := 0
		for _, exp := range in.Exports {
			if len(snapshot.Consumers(in, exp)) > 0 {
				want[model.Ingress] += len(exp.Ports)
				if exp.Mode != model.Passthrough && len(exp.Ports) > 0 {
					router = 1
				}
			}
		}
		want[model.Ingress] += router
		for _, role := range model.GatewayRoles {
			seen := map[string]bool{}
			for _, typ := range snapshot.Types {
				for _, r := range res.ByRole[role][typ] {
					key := typ + " " + snapshot.Name(r)
					require.False(t, seen[key], "duplicate %s", key)
					seen[key] = true
				}
			}
			require.Len(t, res.ByRole[role][resource.ClusterType], want[role], role)
		}
	})
}
