package envoyrun

import (
	"errors"
	"fmt"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// Applied is a dynamic resource an Envoy applied, as its config_dump shows
// it. Envoy reports no version for a load assignment, and one version for
// all the routing scopes of a scoped routes name (their last update's).
type Applied struct {
	Version  string
	Resource *anypb.Any
}

// AppliedResources are the dynamic resources of a config dump that Envoy
// applied, by type URL and name. The error names those still warming or
// that failed, which Envoy does not use; the rest are returned with it.
func AppliedResources(d *adminv3.ConfigDump) (map[string]map[string]Applied, error) {
	out := map[string]map[string]Applied{}
	add := func(typ, version string, r *anypb.Any) {
		if out[typ] == nil {
			out[typ] = map[string]Applied{}
		}
		out[typ][ResourceName(r)] = Applied{Version: version, Resource: r}
	}
	var errs []error
	for _, c := range d.GetConfigs() {
		m, err := c.UnmarshalNew()
		if err != nil {
			return nil, err
		}
		switch v := m.(type) {
		case *adminv3.ClustersConfigDump:
			for _, x := range v.GetDynamicActiveClusters() {
				add(resource.ClusterType, x.GetVersionInfo(), x.GetCluster())
			}
			for _, x := range v.GetDynamicWarmingClusters() {
				errs = append(errs, fmt.Errorf("cluster %q is warming", ResourceName(x.GetCluster())))
			}
		case *adminv3.EndpointsConfigDump:
			for _, x := range v.GetDynamicEndpointConfigs() {
				add(resource.EndpointType, x.GetVersionInfo(), x.GetEndpointConfig())
			}
		case *adminv3.ListenersConfigDump:
			for _, x := range v.GetDynamicListeners() {
				if x.GetWarmingState() != nil || x.GetErrorState() != nil {
					errs = append(errs, fmt.Errorf("listener %q is warming or failed: %v", x.GetName(), x.GetErrorState()))
				}
				if a := x.GetActiveState(); a != nil {
					add(resource.ListenerType, a.GetVersionInfo(), a.GetListener())
				}
			}
		case *adminv3.RoutesConfigDump:
			for _, x := range v.GetDynamicRouteConfigs() {
				add(resource.RouteType, x.GetVersionInfo(), x.GetRouteConfig())
			}
		case *adminv3.ScopedRoutesConfigDump:
			for _, x := range v.GetDynamicScopedRouteConfigs() {
				for _, sc := range x.GetScopedRouteConfigs() {
					add(resource.ScopedRouteType, x.GetVersionInfo(), sc)
				}
			}
		case *adminv3.SecretsConfigDump:
			for _, x := range v.GetDynamicActiveSecrets() {
				add(resource.SecretType, x.GetVersionInfo(), x.GetSecret())
			}
			for _, x := range v.GetDynamicWarmingSecrets() {
				errs = append(errs, fmt.Errorf("secret %q is warming", x.GetName()))
			}
		}
	}
	return out, errors.Join(errs...)
}

// ResourceName is the name of a packed xDS resource: its field 1 (name,
// or cluster_name of a load assignment), read without decoding the rest,
// which at 10,000 services is most of a config dump's cost.
func ResourceName(a *anypb.Any) string {
	b := a.GetValue()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}
