package cache

import (
	"cmp"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// rank orders types so that what is referenced is served before what refers
// to it: secrets before the clusters that use them, clusters before their
// endpoints, all of them before listeners and routes (Envoy's
// make-before-break order for xDS).
func rank(typeURL string) int {
	switch typeURL {
	case resource.SecretType:
		return 0
	case resource.ClusterType:
		return 1
	case resource.EndpointType:
		return 2
	case resource.ListenerType:
		return 4
	case resource.RouteType:
		return 5
	case resource.ScopedRouteType, resource.VirtualHostType:
		return 6
	}
	return 3
}

// known reports whether the cache serves the type: a gateway asking for
// another is refused, so that no client makes the cache keep state for
// type URLs of its choosing.
func known(typeURL string) bool { return rank(typeURL) != 3 }

// referenced reports whether resources of the type are used by listeners and
// routes, so that removing them must wait until those stopped using them.
func referenced(typeURL string) bool { return rank(typeURL) < 4 }

// phases splits a batch into the order it is delivered in: additions and
// updates of referenced types, then every change of the referring types, then
// removals of referenced types. Within a phase types follow rank, and
// each phase keeps the batch order of its changes.
func phases(batch []prepared) [3][]prepared {
	var out [3][]prepared
	for _, p := range batch {
		switch {
		case !referenced(p.typeURL):
			out[1] = append(out[1], p)
		case p.res != nil:
			out[0] = append(out[0], p)
		default:
			out[2] = append(out[2], p)
		}
	}
	for i := range out {
		slices.SortStableFunc(out[i], func(a, b prepared) int {
			return cmp.Compare(rank(a.typeURL), rank(b.typeURL))
		})
	}
	return out
}
