package snapshot

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/model"
)

// sharedRefs counts who holds each resource several services may share:
// a secret (an export's validation context, shared by the exports of the
// same trust domains; the SVIDs and bundles, which the gateway itself
// holds too) or an upstream cluster (shared by the imported instances
// with the same upstream, UpstreamName). A shared resource is deleted
// when its last holder lets go.
type sharedRefs struct {
	services map[model.Role]map[typedName]int
	// gateway are the secrets the gateway itself holds.
	gateway map[model.Role][]string
	// sent are the clusters sent since the settings last changed.
	sent map[model.Role]map[typedName]bool
}

func newSharedRefs() sharedRefs {
	return sharedRefs{
		services: map[model.Role]map[typedName]int{},
		gateway:  map[model.Role][]string{},
		sent:     map[model.Role]map[typedName]bool{},
	}
}

// shared reports whether role's resources of typeURL may be held by
// several services: secrets, and the egress's clusters, which are all
// upstreams (an ingress cluster is one export port's own).
func shared(role model.Role, typeURL string) bool {
	return typeURL == resource.SecretType || role == model.Egress && typeURL == resource.ClusterType
}

// hold adds a service holding the resource, and reports whether to send
// it: a secret every time (its content follows the certificates), a
// cluster only when it was not sent since the settings last changed (its
// name says the rest of its content), so that a change to one of the
// services on an upstream does not send every gateway its cluster again.
func (r sharedRefs) hold(role model.Role, n typedName) bool {
	if r.services[role] == nil {
		r.services[role] = map[typedName]int{}
		r.sent[role] = map[typedName]bool{}
	}
	r.services[role][n]++
	if n.typeURL == resource.SecretType {
		return true
	}
	if r.sent[role][n] {
		return false
	}
	r.sent[role][n] = true
	return true
}

// stale makes every cluster be sent again: the settings changed.
func (r sharedRefs) stale() {
	for _, sent := range r.sent {
		clear(sent)
	}
}

// release removes a service holding the resource, and reports whether
// nobody holds it any more.
func (r sharedRefs) release(role model.Role, n typedName) bool {
	c := r.services[role][n] - 1
	if c > 0 {
		r.services[role][n] = c
		return false
	}
	delete(r.services[role], n)
	delete(r.sent[role], n)
	return n.typeURL != resource.SecretType || !slices.Contains(r.gateway[role], n.name)
}

// setGateway makes names the secrets the gateway itself holds, and returns
// those it held before that nobody holds now.
func (r sharedRefs) setGateway(role model.Role, names []string) []string {
	var gone []string
	for _, n := range r.gateway[role] {
		if !slices.Contains(names, n) && r.services[role][typedName{resource.SecretType, n}] == 0 {
			gone = append(gone, n)
		}
	}
	r.gateway[role] = names
	return gone
}
