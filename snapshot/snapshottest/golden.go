package snapshottest

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
)

// input is an Input as golden files write it.
type input struct {
	snapshot.Input
	// AllocatePortsFrom, when set, allocates consecutive ports from it to
	// every key of EgressPortKeys, as the allocator would.
	AllocatePortsFrom uint32 `json:"allocatePortsFrom,omitempty"`
}

// LoadInput reads an input file of testdata/in.
func LoadInput(path string) (*snapshot.Input, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ti input
	if err := yaml.UnmarshalStrict(b, &ti); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	in := WithEdgeDefaults(&ti.Input)
	if ti.AllocatePortsFrom != 0 {
		in.EgressPorts = map[string]uint32{}
		for i, k := range snapshot.EgressPortKeys(in.Imports) {
			in.EgressPorts[k] = ti.AllocatePortsFrom + uint32(i)
		}
	}
	return in, nil
}

// typeKeys are the short names of the resource types in golden files.
var typeKeys = map[resource.Type]string{
	resource.ClusterType:     "clusters",
	resource.EndpointType:    "endpoints",
	resource.ListenerType:    "listeners",
	resource.ScopedRouteType: "scopedRoutes",
	resource.SecretType:      "secrets",
}

// Render is res as YAML: role, type, then the resources in order, each as
// protojson with proto field names.
func Render(res *snapshot.Resources) ([]byte, error) {
	out := map[string]map[string][]any{}
	for role, byType := range res.ByRole {
		out[string(role)] = map[string][]any{}
		for typ, rs := range byType {
			list := []any{}
			for _, r := range rs {
				b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
				if err != nil {
					return nil, err
				}
				var v any
				if err := json.Unmarshal(b, &v); err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			out[string(role)][typeKeys[typ]] = list
		}
	}
	return yaml.Marshal(out)
}

// WithEdgeDefaults gives in what the edges give every service before it
// reaches the translation: the default SNI of each imported instance
// (federation/validate) and exported port (the registries) without one.
func WithEdgeDefaults(in *snapshot.Input) *snapshot.Input {
	for i := range in.Imports {
		svc := &in.Imports[i].Service
		for j := range svc.Instances {
			if inst := &svc.Instances[j]; inst.SNI == "" {
				inst.SNI = model.DefaultSNI(inst.Port, svc.FQDN)
			}
		}
	}
	for i := range in.Exports {
		exp := &in.Exports[i]
		for j := range exp.Ports {
			if p := &exp.Ports[j]; p.SNI == "" {
				p.SNI = model.DefaultSNI(p.Port, exp.FQDN)
			}
		}
	}
	return in
}
