package snapshot

import (
	"slices"

	"github.com/meshfed/meshfed/model"
)

// secretRefs counts who holds each secret of a role: the services whose
// resources carry it (an export's validation context, shared by the
// exports of the same trust domains) and the gateway itself (SVIDs,
// bundles). A secret is deleted when its last holder lets go.
type secretRefs struct {
	services map[model.Role]map[string]int
	gateway  map[model.Role][]string
}

func newSecretRefs() secretRefs {
	return secretRefs{services: map[model.Role]map[string]int{}, gateway: map[model.Role][]string{}}
}

// hold adds a service holding the secret.
func (r secretRefs) hold(role model.Role, name string) {
	if r.services[role] == nil {
		r.services[role] = map[string]int{}
	}
	r.services[role][name]++
}

// release removes a service holding the secret, and reports whether nobody
// holds it any more.
func (r secretRefs) release(role model.Role, name string) bool {
	n := r.services[role][name] - 1
	if n > 0 {
		r.services[role][name] = n
		return false
	}
	delete(r.services[role], name)
	return !slices.Contains(r.gateway[role], name)
}

// setGateway makes names the secrets the gateway itself holds, and returns
// those it held before that nobody holds now.
func (r secretRefs) setGateway(role model.Role, names []string) []string {
	var gone []string
	for _, n := range r.gateway[role] {
		if !slices.Contains(names, n) && r.services[role][n] == 0 {
			gone = append(gone, n)
		}
	}
	r.gateway[role] = names
	return gone
}
