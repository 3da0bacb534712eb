package snapshot

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	xdsmatcher "github.com/cncf/xds/go/xds/type/matcher/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshfed/meshfed/model"
)

// Check verifies res as Envoy would when loading it, role by role, and
// returns every problem found (nil when none), each naming the resource:
//
//   - every resource, and every typed config packed in an Any within it,
//     passes its protoc-gen-validate rules (ValidateAll);
//   - no two resources of a type share a name;
//   - every cluster a route or a tcp_proxy names exists;
//   - every EDS cluster has its ClusterLoadAssignment;
//   - every SDS secret referenced exists;
//   - every internal listener an endpoint leads to exists;
//   - every route configuration an HTTP connection manager or a routing
//     scope fetches over RDS exists;
//   - no two routing scopes share a key;
//   - no two virtual hosts of a route configuration share a name or a domain;
//   - every listener has a filter chain, no two filter chains of a listener
//     share a name or match the same connections, every chain its matcher
//     selects exists, and no two listeners bind the same address and port.
func Check(res *Resources) error {
	var errs []error
	for _, role := range model.GatewayRoles {
		c := &checker{role: role}
		c.run(res.ByRole[role])
		errs = append(errs, c.errs...)
	}
	return errors.Join(errs...)
}

type checker struct {
	role model.Role
	errs []error

	clusters, endpoints, routes, secrets, listeners map[string]bool
}

func (c *checker) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", c.role, fmt.Sprintf(format, args...)))
}

// refs are what a resource, or a part of one, refers to.
type refs struct {
	clusters, routes, secrets, listeners []string
}

func (c *checker) run(m map[resource.Type][]types.Resource) {
	c.clusters = c.names("cluster", m[resource.ClusterType])
	c.endpoints = c.names("ClusterLoadAssignment", m[resource.EndpointType])
	c.routes = c.names("route configuration", m[resource.RouteType])
	c.listeners = c.names("listener", m[resource.ListenerType])
	c.secrets = c.names("secret", m[resource.SecretType])

	for _, r := range m[resource.ClusterType] {
		cl, ok := r.(*cluster.Cluster)
		if !ok {
			c.fail("cluster type holds a %T", r)
			continue
		}
		what := fmt.Sprintf("cluster %q", cl.GetName())
		c.resolve(what, c.walk(what, cl))
		if cl.GetType() == cluster.Cluster_EDS {
			cla := cl.GetEdsClusterConfig().GetServiceName()
			if cla == "" {
				cla = cl.GetName()
			}
			if !c.endpoints[cla] {
				c.fail("%s is EDS but ClusterLoadAssignment %q does not exist", what, cla)
			}
		}
	}
	for _, r := range m[resource.EndpointType] {
		if cla, ok := r.(*endpoint.ClusterLoadAssignment); ok {
			what := fmt.Sprintf("ClusterLoadAssignment %q", cla.GetClusterName())
			c.resolve(what, c.walk(what, cla))
		} else {
			c.fail("endpoint type holds a %T", r)
		}
	}
	for _, r := range m[resource.RouteType] {
		if rc, ok := r.(*route.RouteConfiguration); ok {
			c.routeConfiguration(rc)
		} else {
			c.fail("route type holds a %T", r)
		}
	}
	c.names("scoped route configuration", m[resource.ScopedRouteType])
	keys := map[string]string{}
	for _, r := range m[resource.ScopedRouteType] {
		if sc, ok := r.(*route.ScopedRouteConfiguration); ok {
			c.scope(sc, keys)
		} else {
			c.fail("scoped route type holds a %T", r)
		}
	}
	binds := map[string]string{}
	for _, r := range m[resource.ListenerType] {
		l, ok := r.(*listener.Listener)
		if !ok {
			c.fail("listener type holds a %T", r)
			continue
		}
		c.listener(l)
		if sa := l.GetAddress().GetSocketAddress(); sa != nil {
			bind := sa.GetAddress() + ":" + strconv.FormatUint(uint64(sa.GetPortValue()), 10)
			if other, ok := binds[bind]; ok {
				c.fail("listeners %q and %q both bind %s", other, l.GetName(), bind)
			} else {
				binds[bind] = l.GetName()
			}
		}
	}
	for _, r := range m[resource.SecretType] {
		if s, ok := r.(*tls.Secret); ok {
			what := fmt.Sprintf("secret %q", s.GetName())
			c.resolve(what, c.walk(what, s))
		} else {
			c.fail("secret type holds a %T", r)
		}
	}
}

// names is the set of names of rs, reporting duplicates.
func (c *checker) names(kind string, rs []types.Resource) map[string]bool {
	set := make(map[string]bool, len(rs))
	for _, r := range rs {
		n := Name(r)
		if set[n] {
			c.fail("duplicate %s %q", kind, n)
		}
		set[n] = true
	}
	return set
}

// scope checks a routing scope against the others' keys (Envoy refuses
// two scopes with one key) and its route configuration, inline or fetched.
func (c *checker) scope(sc *route.ScopedRouteConfiguration, keys map[string]string) {
	what := fmt.Sprintf("scoped route configuration %q", sc.GetName())
	if err := sc.ValidateAll(); err != nil {
		c.fail("%s: invalid: %v", what, err)
	}
	var key []string
	for _, f := range sc.GetKey().GetFragments() {
		key = append(key, f.GetStringKey())
	}
	k := strings.Join(key, "\x00")
	if other, ok := keys[k]; ok {
		c.fail("%s: key %q is the key of scoped route configuration %q too", what, strings.Join(key, ","), other)
	} else {
		keys[k] = sc.GetName()
	}
	switch {
	case sc.GetRouteConfiguration() != nil:
		c.routeConfiguration(sc.GetRouteConfiguration())
	case !c.routes[sc.GetRouteConfigurationName()]:
		c.fail("%s fetches route configuration %q which does not exist", what, sc.GetRouteConfigurationName())
	}
}

func (c *checker) routeConfiguration(rc *route.RouteConfiguration) {
	what := fmt.Sprintf("route configuration %q", rc.GetName())
	if err := rc.ValidateAll(); err != nil {
		c.fail("%s: invalid: %v", what, err)
	}
	vhosts := map[string]bool{}
	domains := map[string]string{}
	for _, vh := range rc.GetVirtualHosts() {
		if vhosts[vh.GetName()] {
			c.fail("%s: duplicate virtual host %q", what, vh.GetName())
		}
		vhosts[vh.GetName()] = true
		for _, d := range vh.GetDomains() {
			if other, ok := domains[d]; ok {
				c.fail("%s: domain %q is in virtual hosts %q and %q", what, d, other, vh.GetName())
			} else {
				domains[d] = vh.GetName()
			}
		}
		part := fmt.Sprintf("%s virtual host %q", what, vh.GetName())
		c.resolve(part, c.walk(part, vh))
	}
}

func (c *checker) listener(l *listener.Listener) {
	what := fmt.Sprintf("listener %q", l.GetName())
	if err := l.ValidateAll(); err != nil {
		c.fail("%s: invalid: %v", what, err)
	}
	if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil {
		c.fail("%s has no filter chains", what)
	}
	for _, lf := range l.GetListenerFilters() {
		c.resolve(what, c.walk(what, lf))
	}
	matches := map[string]string{}
	chains := map[string]bool{}
	for _, fc := range l.GetFilterChains() {
		part := fmt.Sprintf("%s filter chain %q", what, fc.GetName())
		c.resolve(part, c.walk(part, fc))
		if chains[fc.GetName()] {
			c.fail("%s: duplicate filter chain %q", what, fc.GetName())
		}
		chains[fc.GetName()] = true
		if l.GetFilterChainMatcher() != nil {
			// Envoy ignores each chain's match: the matcher chooses.
			continue
		}
		for _, key := range matchKeys(fc.GetFilterChainMatch()) {
			if other, ok := matches[key.key]; ok {
				c.fail("%s: filter chains %q and %q overlap on %s", what, other, fc.GetName(), key.desc)
				break
			}
			matches[key.key] = fc.GetName()
		}
	}
	if fc := l.GetDefaultFilterChain(); fc != nil {
		part := fmt.Sprintf("%s default filter chain", what)
		c.resolve(part, c.walk(part, fc))
	}
	if m := l.GetFilterChainMatcher(); m != nil {
		c.chainMatcher(what, m, chains)
	}
}

// chainMatcher checks that every filter chain a listener's matcher selects
// exists: Envoy refuses the listener otherwise.
func (c *checker) chainMatcher(what string, m *xdsmatcher.Matcher, chains map[string]bool) {
	if err := m.ValidateAll(); err != nil {
		c.fail("%s: invalid filter chain matcher: %v", what, err)
	}
	var names []string
	var each func(*xdsmatcher.Matcher)
	onMatch := func(om *xdsmatcher.Matcher_OnMatch) {
		if om == nil {
			return
		}
		if a := om.GetAction(); a != nil {
			var v wrapperspb.StringValue
			if err := a.GetTypedConfig().UnmarshalTo(&v); err != nil {
				c.fail("%s: filter chain matcher action %q: %v", what, a.GetName(), err)
				return
			}
			names = append(names, v.GetValue())
		}
		if sub := om.GetMatcher(); sub != nil {
			each(sub)
		}
	}
	each = func(m *xdsmatcher.Matcher) {
		onMatch(m.GetOnNoMatch())
		for _, fm := range m.GetMatcherList().GetMatchers() {
			onMatch(fm.GetOnMatch())
		}
		tree := m.GetMatcherTree()
		for _, om := range tree.GetExactMatchMap().GetMap() {
			onMatch(om)
		}
		for _, om := range tree.GetPrefixMatchMap().GetMap() {
			onMatch(om)
		}
	}
	each(m)
	slices.Sort(names)
	for _, n := range slices.Compact(names) {
		if !chains[n] {
			c.fail("%s: its filter chain matcher selects filter chain %q which does not exist", what, n)
		}
	}
}

type matchKey struct{ key, desc string }

// matchKeys expands a FilterChainMatch into one key per combination of its
// repeated criteria that Envoy matches one value at a time (server names,
// application protocols), so that two chains share a key exactly when some
// connection matches both with the same specificity, which Envoy refuses.
func matchKeys(m *listener.FilterChainMatch) []matchKey {
	rest := proto.Clone(m).(*listener.FilterChainMatch)
	if rest == nil {
		rest = &listener.FilterChainMatch{}
	}
	rest.ServerNames, rest.ApplicationProtocols = nil, nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rest)
	if err != nil {
		return nil
	}
	base := string(b)
	names := m.GetServerNames()
	if len(names) == 0 {
		names = []string{""}
	}
	alpns := m.GetApplicationProtocols()
	if len(alpns) == 0 {
		alpns = []string{""}
	}
	var keys []matchKey
	for _, n := range names {
		for _, a := range alpns {
			desc := fmt.Sprintf("server name %q", n)
			if n == "" {
				desc = "any server name"
			}
			if a != "" {
				desc += fmt.Sprintf(" application protocol %q", a)
			}
			keys = append(keys, matchKey{base + "\x00" + n + "\x00" + a, desc})
		}
	}
	return keys
}

// resolve reports the references of what that name nothing.
func (c *checker) resolve(what string, r refs) {
	for _, n := range r.clusters {
		if !c.clusters[n] {
			c.fail("%s routes to cluster %q which does not exist", what, n)
		}
	}
	for _, n := range r.routes {
		if !c.routes[n] {
			c.fail("%s fetches route configuration %q which does not exist", what, n)
		}
	}
	for _, n := range r.listeners {
		if !c.listeners[n] {
			c.fail("%s leads to listener %q which does not exist", what, n)
		}
	}
	for _, n := range r.secrets {
		if !c.secrets[n] {
			c.fail("%s references secret %q which does not exist", what, n)
		}
	}
}

// walk validates m and every message packed in an Any within it, and
// collects their references. Top-level listeners and route configurations
// are validated by their callers, which walk their parts.
func (c *checker) walk(what string, m proto.Message) refs {
	var r refs
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		switch m.(type) {
		case *listener.FilterChain, *listener.ListenerFilter, *route.VirtualHost:
			// validated with their listener or route configuration
		default:
			if err := v.ValidateAll(); err != nil {
				c.fail("%s: invalid: %v", what, err)
			}
		}
	}
	c.visit(what, m.ProtoReflect(), &r)
	slices.Sort(r.clusters)
	slices.Sort(r.routes)
	slices.Sort(r.secrets)
	slices.Sort(r.listeners)
	r.listeners = slices.Compact(r.listeners)
	r.clusters = slices.Compact(r.clusters)
	r.routes = slices.Compact(r.routes)
	r.secrets = slices.Compact(r.secrets)
	return r
}

func (c *checker) visit(what string, m protoreflect.Message, r *refs) {
	switch x := m.Interface().(type) {
	case *anypb.Any:
		inner, err := x.UnmarshalNew()
		if err != nil {
			c.fail("%s: typed config %s: %v", what, x.GetTypeUrl(), err)
			return
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				c.fail("%s: invalid %s: %v", what, inner.ProtoReflect().Descriptor().FullName(), err)
			}
		}
		c.visit(what, inner.ProtoReflect(), r)
		return
	case *route.RouteAction:
		if n := x.GetCluster(); n != "" {
			r.clusters = append(r.clusters, n)
		}
		for _, w := range x.GetWeightedClusters().GetClusters() {
			r.clusters = append(r.clusters, w.GetName())
		}
	case *tcpproxy.TcpProxy:
		if n := x.GetCluster(); n != "" {
			r.clusters = append(r.clusters, n)
		}
		for _, w := range x.GetWeightedClusters().GetClusters() {
			r.clusters = append(r.clusters, w.GetName())
		}
	case *hcm.HttpConnectionManager:
		if rds := x.GetRds(); rds != nil {
			r.routes = append(r.routes, rds.GetRouteConfigName())
		}
	case *core.EnvoyInternalAddress:
		r.listeners = append(r.listeners, x.GetServerListenerName())
	case *tls.SdsSecretConfig:
		if x.GetSdsConfig() != nil {
			r.secrets = append(r.secrets, x.GetName())
		}
	case *core.ConfigSource:
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				c.visit(what, l.Get(i).Message(), r)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					c.visit(what, mv.Message(), r)
					return true
				})
			}
		default:
			c.visit(what, v.Message(), r)
		}
		return true
	})
}
