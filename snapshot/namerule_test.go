package snapshot_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// shapes are the names of names.go: by first field, then by second
// field where it is fixed ("" for any other), how many fields follow it
// (-1: one or more).
var shapes = map[string]map[string][]int{
	"egress":    {"": {3}, "http": {0, 1}, "connect": {0}},
	"ingress":   {"": {2}, "tls": {0}, "router": {0}},
	"consumers": {"": {-1}},
	"connect":   {"": {2}},
	"consul":    {"": {3}},
	"upstream":  {"": {2}},
	"meshfed":   {"svid": {1}, "bundle": {1}, "validator": {-1}, "consul-leaf": {1}, "consul-callers": {1}, "consul-roots": {0}},
}

// followsTheRule fails t unless name is one of names.go's: a fixed prefix
// and escaped fields, as many as its kind has.
func followsTheRule(t *testing.T, where, name string) {
	t.Helper()
	var fields []string
	for _, f := range strings.Split(name, "/") {
		u, ok := snapshot.Unescape(f)
		require.True(t, ok, "%s: field %q of %q is not escaped", where, f, name)
		fields = append(fields, u)
	}
	kinds, ok := shapes[fields[0]]
	require.True(t, ok, "%s: %q has no known first field", where, name)
	rest := fields[1:]
	var counts []int
	if len(rest) > 0 {
		counts, ok = kinds[rest[0]]
	}
	if ok && len(rest) > 0 {
		rest = rest[1:]
	} else {
		counts, ok = kinds[""]
		require.True(t, ok, "%s: %q: unknown second field", where, name)
		rest = fields[1:]
	}
	if slices.Contains(counts, -1) && len(rest) > 0 {
		return
	}
	require.Contains(t, counts, len(rest), "%s: %q has %d fields after its kind", where, name, len(rest))
}

// Every name the gateways get follows the rule: resources, filter chains,
// virtual hosts and route configurations, stat prefixes, and every
// reference to a cluster, a secret or an internal listener; the only
// others are the bootstrap's cluster to the agent and Envoy's own
// access-log operators.
func TestEveryGoldenNameFollowsTheRule(t *testing.T) {
	ins, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	others := map[string]bool{snapshot.XDSClusterName: true, "%UPSTREAM_CLUSTER%": true}
	seen := 0
	for _, path := range ins {
		in := loadInput(t, path)
		res := snapshot.Build(in)
		require.Empty(t, res.Rejected)
		for _, role := range model.GatewayRoles {
			for _, typ := range snapshot.Types {
				for _, r := range res.ByRole[role][typ] {
					followsTheRule(t, path, snapshot.Name(r))
					seen++
					walkNames(r.ProtoReflect(), func(field, name string) {
						if !others[name] {
							followsTheRule(t, fmt.Sprintf("%s: %s in %s", path, field, snapshot.Name(r)), name)
							seen++
						}
					})
				}
			}
		}
	}
	require.Greater(t, seen, 350, "names checked")
}

// nameFields are the fields that hold a name meshfed gives, by message.
var nameFields = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.listener.v3.FilterChain":                                              {"name"},
	"envoy.config.route.v3.VirtualHost":                                                 {"name"},
	"envoy.config.route.v3.RouteConfiguration":                                          {"name"},
	"envoy.config.route.v3.Route":                                                       {"name", "stat_prefix"},
	"envoy.config.route.v3.RouteAction":                                                 {"cluster"},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":                            {"cluster", "stat_prefix"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {"stat_prefix"},
	"envoy.extensions.filters.network.http_connection_manager.v3.ScopedRoutes":          {"name"},
	"envoy.extensions.filters.network.rbac.v3.RBAC":                                     {"stat_prefix"},
	"envoy.extensions.filters.http.rbac.v3.RBAC":                                        {"rules_stat_prefix"},
	"envoy.extensions.filters.network.ext_authz.v3.ExtAuthz":                            {"stat_prefix"},
	"envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig":                         {"name"},
	"envoy.config.core.v3.EnvoyInternalAddress":                                         {"server_listener_name"},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc":                                        {"cluster_name"},
	"envoy.config.accesslog.v3.AccessLog":                                               {},
}

// walkNames calls f with every name nameFields lists in m and the
// messages under it, Any included.
func walkNames(m protoreflect.Message, f func(field, name string)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err == nil {
			walkNames(inner.ProtoReflect(), f)
		}
		return
	}
	for _, n := range nameFields[m.Descriptor().FullName()] {
		fd := m.Descriptor().Fields().ByName(n)
		if fd != nil && m.Has(fd) {
			f(string(m.Descriptor().Name())+"."+string(n), m.Get(fd).String())
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				walkNames(v.List().Get(i).Message(), f)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walkNames(mv.Message(), f)
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			walkNames(v.Message(), f)
		}
		return true
	})
}
