package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/envoyrun"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot/cache"
)

const (
	egressRole  = model.Egress
	ingressRole = model.Ingress
)

// configMatches checks that Envoy's dynamic configuration is exactly what
// the cache serves the role: the same names, and the same contents (private
// keys aside: Envoy redacts them); with delta ADS the same versions too. A
// listener still warming, or a secret, is not yet in sync.
func configMatches(ctx context.Context, e *envoyrun.Envoy, c *cache.Cache, role model.Role, sotw bool) error {
	// Envoy asks for the secrets its clusters and listeners name, and only
	// those: a secret nothing uses yet (the bundle of a peer nothing is
	// imported from) is not served.
	used := map[string]bool{}
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		for _, r := range c.Resources(role, typ) {
			if err := secretRefs(r.Resource, used); err != nil {
				return err
			}
		}
	}
	types := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.ScopedRouteType, resource.SecretType}
	want := map[string]map[string]envoyrun.Applied{}
	for _, typ := range types {
		want[typ] = map[string]envoyrun.Applied{}
		for _, r := range c.Resources(role, typ) {
			if typ == resource.SecretType && !used[r.Name] {
				continue
			}
			want[typ][r.Name] = envoyrun.Applied{Version: r.Version, Resource: r.Resource}
		}
	}
	return envoyHolds(ctx, e, want, types, sotw, "what the agent serves")
}

// envoyHolds checks that Envoy's dynamic resources of the given types are
// want's (see sameResources); served says where want comes from.
func envoyHolds(ctx context.Context, e *envoyrun.Envoy, want map[string]map[string]envoyrun.Applied, types []string, sotw bool, served string) error {
	dump, err := e.ConfigDump(ctx, "include_eds")
	if err != nil {
		return err
	}
	got, err := dynamicResources(dump)
	if err != nil {
		return fmt.Errorf("envoy %s: %w", e.Name(), err)
	}
	if err := addInlineAssignments(want); err != nil {
		return err
	}
	var errs []error
	for _, typ := range types {
		if err := sameResources(typ, want[typ], got[typ], sotw); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("envoy %s differs from %s: %w", e.Name(), served, err)
	}
	return nil
}

// addInlineAssignments adds to want the load assignment of every cluster
// that carries its own (a static cluster, as the ingress gateway's SNI
// clusters are): Envoy's config_dump?include_eds shows them beside those
// of EDS.
func addInlineAssignments(want map[string]map[string]envoyrun.Applied) error {
	for name, a := range want[resource.ClusterType] {
		c := &cluster.Cluster{}
		if err := a.Resource.UnmarshalTo(c); err != nil {
			return err
		}
		if c.GetLoadAssignment() == nil {
			continue
		}
		cla, err := anypb.New(c.GetLoadAssignment())
		if err != nil {
			return err
		}
		if want[resource.EndpointType] == nil {
			want[resource.EndpointType] = map[string]envoyrun.Applied{}
		}
		want[resource.EndpointType][name] = envoyrun.Applied{Resource: cla}
	}
	return nil
}

func sameResources(typ string, want, got map[string]envoyrun.Applied, sotw bool) error {
	short := typ[strings.LastIndexByte(typ, '.')+1:]
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var errs []error
	for _, n := range names {
		w, inWant := want[n]
		g, inGot := got[n]
		switch {
		case !inGot:
			errs = append(errs, fmt.Errorf("%s %q: served, not in Envoy", short, n))
		case !inWant:
			errs = append(errs, fmt.Errorf("%s %q: in Envoy, not served", short, n))
		// Envoy keeps no version of an EDS resource, nor of a routing
		// scope (only of the last update of all of them), and a listener
		// updated in place (only filter chains changed) keeps the version
		// it was created with in config_dump (Envoy 1.40): their content
		// is compared.
		case !sotw && typ != resource.EndpointType && typ != resource.ScopedRouteType && w.Version != g.Version &&
			(typ != resource.ListenerType || diffResource(w.Resource, g.Resource) != ""):
			errs = append(errs, fmt.Errorf("%s %q: Envoy has version %q, served %q", short, n, g.Version, w.Version))
		default:
			if d := diffResource(w.Resource, g.Resource); d != "" {
				errs = append(errs, fmt.Errorf("%s %q (-served +envoy):\n%s", short, n, d))
			}
		}
	}
	return errors.Join(errs...)
}

func diffResource(want, got *anypb.Any) string {
	w, err := want.UnmarshalNew()
	if err != nil {
		return err.Error()
	}
	g, err := got.UnmarshalNew()
	if err != nil {
		return err.Error()
	}
	redactKeys(w)
	if wc, ok := w.(*endpoint.ClusterLoadAssignment); ok {
		// Envoy reports the endpoints it holds, with its defaults filled
		// in (weights, health, policy): compare the addresses.
		return cmp.Diff(addresses(wc), addresses(g.(*endpoint.ClusterLoadAssignment)))
	}
	// cmp.Diff walks by reflection: 2,000 imports' resources took 20 s to
	// compare under -race, 2 s with proto.Equal first. Only a difference
	// is diffed.
	if proto.Equal(w, g) {
		return ""
	}
	return cmp.Diff(w, g, protocmp.Transform())
}

func addresses(cla *endpoint.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			addr := e.GetEndpoint().GetAddress()
			if in := addr.GetEnvoyInternalAddress(); in != nil {
				out = append(out, "internal:"+in.GetServerListenerName())
				continue
			}
			sa := addr.GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	slices.Sort(out)
	return out
}

// secretRefs adds to names the SDS secrets a, or anything packed in it,
// refers to.
func secretRefs(a *anypb.Any, names map[string]bool) error {
	m, err := a.UnmarshalNew()
	if err != nil {
		return err
	}
	var walk func(protoreflect.Message) error
	walk = func(m protoreflect.Message) error {
		switch v := m.Interface().(type) {
		case *tlsv3.SdsSecretConfig:
			names[v.GetName()] = true
			return nil
		case *anypb.Any:
			inner, err := v.UnmarshalNew()
			if err != nil {
				return err
			}
			return walk(inner.ProtoReflect())
		}
		var err error
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsMap():
				if fd.MapValue().Message() != nil {
					v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
						err = walk(mv.Message())
						return err == nil
					})
				}
			case fd.Message() == nil:
			case fd.IsList():
				for i := 0; i < v.List().Len() && err == nil; i++ {
					err = walk(v.List().Get(i).Message())
				}
			default:
				err = walk(v.Message())
			}
			return err == nil
		})
		return err
	}
	return walk(m.ProtoReflect())
}

// redactKeys replaces private keys as Envoy's config_dump shows them.
func redactKeys(m proto.Message) {
	s, ok := m.(*tlsv3.Secret)
	if !ok || s.GetTlsCertificate().GetPrivateKey() == nil {
		return
	}
	s.GetTlsCertificate().PrivateKey = &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: "[redacted]"}}
}

// dynamicResources are the dynamic resources Envoy applied, by type URL
// and name; an error names those it does not use yet.
func dynamicResources(d *adminv3.ConfigDump) (map[string]map[string]envoyrun.Applied, error) {
	out, err := envoyrun.AppliedResources(d)
	for _, c := range d.GetConfigs() {
		scoped := &adminv3.ScopedRoutesConfigDump{}
		// Every egress HTTP listener names the same scoped routes: Envoy
		// must keep one table of scopes, not one per listener.
		if c.UnmarshalTo(scoped) == nil && len(scoped.GetDynamicScopedRouteConfigs()) > 1 {
			err = errors.Join(err, fmt.Errorf("%d tables of routing scopes, not one", len(scoped.GetDynamicScopedRouteConfigs())))
		}
	}
	return out, err
}

// churnStats are Envoy's counters of listener and cluster changes: a push
// that changes nothing leaves them as they were.
var churnStats = []string{
	"listener_manager.listener_added",
	"listener_manager.listener_modified",
	"listener_manager.listener_removed",
	"listener_manager.listener_in_place_updated",
	"cluster_manager.cluster_added",
	"cluster_manager.cluster_modified",
	"cluster_manager.cluster_removed",
}

func churn(ctx context.Context, e *envoyrun.Envoy) (map[string]uint64, error) {
	st, err := e.Stats(ctx, "^(listener_manager|cluster_manager)\\.")
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, k := range churnStats {
		out[k] = st[k]
	}
	return out, nil
}
