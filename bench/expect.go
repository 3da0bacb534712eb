package bench

import (
	"slices"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// Expect is one thing every gateway must come to hold for a change to
// count as delivered: a resource with the given content (any content when
// Digest is 0), or its absence.
//
// Expectations of one resource are met in order: a state that meets one
// also meets, by superseding them, the older ones. A Moot expectation is
// met as soon as it is registered: it stands for an absence that the
// stream cannot show (a partial state-of-the-world type), and only
// supersedes the older expectations of the resource.
type Expect struct {
	Change uint64 `json:"c"`
	Type   string `json:"t"`
	Name   string `json:"n"`
	Absent bool   `json:"a,omitempty"`
	Moot   bool   `json:"m,omitempty"`
	Digest uint64 `json:"d,omitempty"`
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// digest is the adsclient.Digest of m serialized as every server here
// serializes: deterministically.
func digest(m proto.Message) uint64 {
	b, err := deterministic.Marshal(m)
	if err != nil {
		// The translation only builds messages that marshal.
		panic(err)
	}
	return adsclient.Digest(b)
}

// portFunc returns the egress listener port of an imported instance, if
// known.
type portFunc func(peer, resourceID, instanceID string) (uint32, bool)

// egressOf translates one import with the ports known for it. missing lists
// the names of the listeners whose port is not known yet.
func egressOf(base *snapshot.Input, imp *model.Import, port portFunc) (sr snapshot.ServiceResources, missing []string) {
	if imp == nil {
		return sr, nil
	}
	ports := map[string]uint32{}
	for _, inst := range imp.Service.Instances {
		if inst.Protocol.RoutedByHost() {
			continue
		}
		key := snapshot.EgressKey(imp.Peer, imp.ResourceID, inst.ID)
		if p, ok := port(imp.Peer, imp.ResourceID, inst.ID); ok {
			ports[key] = p
		} else {
			missing = append(missing, snapshot.EgressName(imp.Peer, imp.ResourceID, inst.ID))
		}
	}
	return snapshot.EgressResources(base.Settings, base.Secrets, *imp, ports), missing
}

// holders counts the services that hold each upstream cluster: a
// service's change removes a cluster only when it was the last.
type holders map[string]int

func (h holders) add(sr snapshot.ServiceResources, d int) {
	for _, c := range sr.Clusters {
		if h[c.GetName()] += d; h[c.GetName()] == 0 {
			delete(h, c.GetName())
		}
	}
}

// newHolders counts the holders of the upstreams of imports.
func newHolders(base *snapshot.Input, imports []model.Import) holders {
	h := holders{}
	for _, imp := range imports {
		h.add(snapshot.EgressResources(base.Settings, base.Secrets, imp, nil), 1)
	}
	return h
}

// expectations lists what every gateway must hold once c is delivered: the
// resources of the service that differ before and after, and the absence
// of those it no longer has, except the upstream clusters other services
// hold (held, which c's change updates): the gateways have them already,
// and keep them. With partialSotw, absences that a state-of-the-world
// stream cannot express (types other than clusters and listeners) are
// Moot.
func expectations(base *snapshot.Input, c *change, port portFunc, partialSotw bool, held holders) []Expect {
	before, _ := egressOf(base, c.old, port)
	after, missing := egressOf(base, c.new, port)
	held.add(before, -1)
	others := map[string]bool{}
	for _, cl := range slices.Concat(before.Clusters, after.Clusters) {
		if held[cl.GetName()] > 0 {
			others[cl.GetName()] = true
		}
	}
	held.add(after, 1)
	var out []Expect
	add := func(e Expect) {
		e.Change = c.id
		out = append(out, e)
	}
	diff := func(typeURL string, old, cur map[string]uint64) {
		if typeURL == resource.ClusterType {
			for name := range others {
				delete(old, name)
				delete(cur, name)
			}
		}
		for name, d := range cur {
			if od, ok := old[name]; !ok || od != d {
				add(Expect{Type: typeURL, Name: name, Digest: d})
			}
		}
		full := typeURL == resource.ClusterType || typeURL == resource.ListenerType
		for name := range old {
			if _, ok := cur[name]; !ok {
				add(Expect{Type: typeURL, Name: name, Absent: true, Moot: partialSotw && !full})
			}
		}
	}
	diff(resource.ClusterType, digests(before.Clusters), digests(after.Clusters))
	diff(resource.EndpointType, digests(before.Endpoints), digests(after.Endpoints))
	oldL, newL := digests(before.Listeners), digests(after.Listeners)
	for _, name := range missing {
		newL[name] = 0 // present, content unknown until the port is given
		delete(oldL, name)
	}
	diff(resource.ListenerType, oldL, newL)
	diff(resource.ScopedRouteType, digests(scopes(before.HostRoutes)), digests(scopes(after.HostRoutes)))
	return out
}

func scopes(hrs []snapshot.HostRoute) []*route.ScopedRouteConfiguration {
	out := make([]*route.ScopedRouteConfiguration, len(hrs))
	for i, hr := range hrs {
		out[i] = hr.Scope
	}
	return out
}

func digests[M proto.Message](ms []M) map[string]uint64 {
	out := make(map[string]uint64, len(ms))
	for _, m := range ms {
		out[snapshot.Name(m)] = digest(m)
	}
	return out
}

// The scopes of a change: what a gateway must take in for it.
const (
	// ScopeEndpoints: load assignments only.
	ScopeEndpoints = "endpoints"
	// ScopeCluster: clusters or dedicated listeners, not the routing.
	ScopeCluster = "cluster"
	// ScopeRoute: the service's routing scope (its virtual host).
	ScopeRoute = "route"
)

// Scopes lists every scope.
var Scopes = []string{ScopeEndpoints, ScopeCluster, ScopeRoute}

func scopeOf(exps []Expect) string {
	scope := ScopeEndpoints
	for _, e := range exps {
		switch {
		case e.Moot:
		case e.Type == resource.ScopedRouteType:
			return ScopeRoute
		case e.Type != resource.EndpointType:
			scope = ScopeCluster
		}
	}
	return scope
}
