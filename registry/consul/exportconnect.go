package consul

import (
	"cmp"

	"github.com/hashicorp/consul/api"

	"github.com/meshfed/meshfed/model"
)

// instanceKey names one service instance: service IDs are unique on a
// node only.
type instanceKey struct{ node, id string }

func keyOf(en *api.ServiceEntry) instanceKey {
	return instanceKey{node: en.Node.Node, id: en.Service.ID}
}

// connectEndpoints maps each picked instance of a Connect service to the
// endpoints that reach it with Connect: its passing sidecars, or itself
// when it is Connect-native and passes. A sidecar fronts the instance
// Proxy.DestinationServiceID names on its node; one registered without
// it (the catalog API allows that) fronts the first picked instance on
// its node.
func connectEndpoints(picked, connect []*api.ServiceEntry) map[instanceKey][]model.LocalEndpoint {
	known := make(map[instanceKey]bool, len(picked))
	firstOn := map[string]instanceKey{}
	for _, en := range picked {
		k := keyOf(en)
		known[k] = true
		if _, ok := firstOn[k.node]; !ok {
			firstOn[k.node] = k
		}
	}
	out := map[instanceKey][]model.LocalEndpoint{}
	for _, en := range connect {
		if en.Service == nil || en.Node == nil || !passing(en.Checks) {
			continue
		}
		var k instanceKey
		switch {
		case en.Service.Kind == api.ServiceKindConnectProxy && en.Service.Proxy != nil && en.Service.Proxy.DestinationServiceID != "":
			k = instanceKey{node: en.Node.Node, id: en.Service.Proxy.DestinationServiceID}
		case en.Service.Kind == api.ServiceKindConnectProxy:
			k = firstOn[en.Node.Node]
		case en.Service.Kind == api.ServiceKindTypical && en.Service.Connect != nil && en.Service.Connect.Native:
			k = keyOf(en)
		default:
			continue
		}
		if !known[k] {
			continue // it fronts an instance that fails, or is not selected
		}
		out[k] = append(out[k], model.LocalEndpoint{Address: cmp.Or(en.Service.Address, en.Node.Address), Port: uint32(en.Service.Port)})
	}
	return out
}

// connectInstance says whether an entry of /v1/health/connect is a
// Connect proxy or a Connect-native instance.
func connectInstance(en *api.ServiceEntry) bool {
	return en.Service != nil && (en.Service.Kind == api.ServiceKindConnectProxy ||
		(en.Service.Kind == api.ServiceKindTypical && en.Service.Connect != nil && en.Service.Connect.Native))
}

// passing is Consul's ?passing: every check passes, node checks included.
func passing(checks api.HealthChecks) bool {
	for _, c := range checks {
		if c.Status != api.HealthPassing {
			return false
		}
	}
	return true
}
