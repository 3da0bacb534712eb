package snapshot

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshfed/meshfed/model"
)

// CheckService verifies the resources of one or more services of a role as
// Check does, together with what the gateway holds besides them (its
// listeners and secrets), so that a change is verified without the rest of
// the catalog. Across services, names cannot collide (they derive from
// distinct keys) and ports are allocated uniquely, so what Check would add by
// looking at the whole role is two exports with one SNI: pass every
// export's resources at once for that.
func CheckService(in *Input, role model.Role, sr ServiceResources) error {
	sr.Secrets = append(slices.Clip(sr.Secrets), GatewaySecrets(in, role)...)
	byRole := map[model.Role]map[resource.Type][]types.Resource{}
	switch role {
	case model.Egress:
		sr.Listeners = append(slices.Clip(sr.Listeners), EgressHTTP(in, sr.HostRoutes)...)
		if l := EgressConnectListener(in, sr.ConnectRoutes); l != nil {
			sr.Listeners = append(sr.Listeners, l)
			sr.Secrets = append(sr.Secrets, ConsulLeafSecret(in, sr.ConsulName), ConsulCallersSecret(in, sr.ConsulName))
		}
		byRole[model.Egress] = sr.byType()
	case model.Ingress:
		ls, cs := IngressListeners(in, sr.IngressRoutes)
		sr.Listeners = append(slices.Clip(sr.Listeners), ls...)
		sr.Clusters = append(slices.Clip(sr.Clusters), cs...)
		byRole[model.Ingress] = sr.byType()
	}
	return Check(&Resources{ByRole: byRole})
}
