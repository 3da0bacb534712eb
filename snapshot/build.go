package snapshot

import (
	"cmp"
	"maps"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/model"
)

// Build translates a whole input at once: what a new Translator makes of
// it in one Apply. Rejected services are left out, and listed.
func Build(in *Input) *Resources {
	ch := Changes{Secrets: &in.Secrets, Ports: in.EgressPorts}
	for i := range in.Imports {
		ch.Imports = append(ch.Imports, ImportChange{Key: model.ImportKey(in.Imports[i]), Import: &in.Imports[i]})
	}
	for i := range in.Exports {
		ch.Exports = append(ch.Exports, ExportChange{Key: model.ExportKey(in.Exports[i].Name), Export: &in.Exports[i]})
	}
	res := NewTranslator(in.Settings).Apply(ch)
	g := State{}
	g.Add(res)
	out := g.Resources()
	out.Rejected = res.Rejected
	return out
}

// EgressResources are one import's own resources on the egress gateway,
// as a Translator of s with secrets gives them (without what the gateway
// holds because of every import: its HTTP listeners, its Connect
// listener): for a test or a benchmark that must know what a gateway
// receives for one change. ports are the dedicated listener ports by
// EgressKey.
func EgressResources(s Settings, secrets Secrets, imp model.Import, ports map[string]uint32) ServiceResources {
	return egressResources(&view{Settings: s, Secrets: secrets}, imp, ports)
}

// State is what the results of Apply add up to: the resources of each
// role, by type and name, as a cache holds them.
type State map[model.Role]map[resource.Type]map[string]types.Resource

// Add applies res.
func (g State) Add(res Result) {
	for role, changes := range res.Changes {
		if g[role] == nil {
			g[role] = map[resource.Type]map[string]types.Resource{}
		}
		for _, c := range changes {
			if g[role][c.TypeURL] == nil {
				g[role][c.TypeURL] = map[string]types.Resource{}
			}
			if c.Resource == nil {
				delete(g[role][c.TypeURL], c.Name)
			} else {
				g[role][c.TypeURL][c.Name] = c.Resource
			}
		}
	}
}

// Resources lays g out as Build returns it: every type of every role,
// sorted by name.
func (g State) Resources() *Resources {
	out := &Resources{ByRole: map[model.Role]map[resource.Type][]types.Resource{}}
	for _, role := range model.GatewayRoles {
		byType := make(map[resource.Type][]types.Resource, len(Types))
		for _, typ := range Types {
			byName := g[role][typ]
			list := make([]types.Resource, 0, len(byName))
			for _, n := range slices.SortedFunc(maps.Keys(byName), cmp.Compare) {
				list = append(list, byName[n])
			}
			byType[typ] = list
		}
		out.ByRole[role] = byType
	}
	return out
}
