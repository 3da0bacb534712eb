package snapshot

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"sigs.k8s.io/yaml"
)

// assertProtoEqual fails t when got differs from want.
func assertProtoEqual(t *testing.T, want, got any) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("unexpected difference (-want +got):\n%s", diff)
	}
}

// testInput is an Input as golden files write it.
type testInput struct {
	Input
	// AllocatePortsFrom, when set, allocates consecutive ports from it to
	// every key of EgressPortKeys, as the allocator would.
	AllocatePortsFrom uint32 `json:"allocatePortsFrom,omitempty"`
}

func loadInput(t testing.TB, path string) *Input {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var ti testInput
	require.NoError(t, yaml.UnmarshalStrict(b, &ti), path)
	in := ti.Input
	if ti.AllocatePortsFrom != 0 {
		in.EgressPorts = map[string]uint32{}
		for i, k := range EgressPortKeys(in.Imports) {
			in.EgressPorts[k] = ti.AllocatePortsFrom + uint32(i)
		}
	}
	return &in
}

// typeKeys are the short names of the resource types in golden files.
var typeKeys = map[resource.Type]string{
	resource.ClusterType:  "clusters",
	resource.EndpointType: "endpoints",
	resource.ListenerType: "listeners",
	resource.RouteType:    "routes",
	resource.SecretType:   "secrets",
}

// render is res as YAML: role, type, then the resources in order, each as
// protojson with proto field names.
func render(t testing.TB, res *Resources) []byte {
	t.Helper()
	out := map[string]map[string][]any{}
	for role, byType := range res.ByRole {
		out[string(role)] = map[string][]any{}
		for typ, rs := range byType {
			list := []any{}
			for _, r := range rs {
				b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
				require.NoError(t, err)
				var v any
				require.NoError(t, json.Unmarshal(b, &v))
				list = append(list, v)
			}
			out[string(role)][typeKeys[typ]] = list
		}
	}
	b, err := yaml.Marshal(out)
	require.NoError(t, err)
	return b
}

// mustCheck fails t when res does not pass Check.
func mustCheck(t testing.TB, res *Resources) {
	t.Helper()
	require.NoError(t, Check(res))
}
