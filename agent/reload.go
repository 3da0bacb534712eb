package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/preflight"
	"github.com/meshfed/meshfed/registry/consul"
)

// liveFields are the configuration fields a reload applies while the
// agent runs: where the exports come from (the registry file, the Consul
// services exported and to which consumers), the peers (added, removed
// or changed; their trust bundles must be configured already), the grace
// of the streams that start after, the cap of the redial backoff (from
// each peer's next wait), and the egress gateway's timeouts. Every other
// field is read at start only: identity.settleTime among them, as the
// watchers of the certificate files take it when they start.
var liveFields = []string{"exports", "consul.export", "peers", "federation.grace", "federation.maxBackoff", "gateways.egress.httpRouteTimeout", "gateways.egress.streamIdleTimeout"}

// ReloadResult is the answer of a reload: the fields that changed, by
// name, split into those applied and those that take effect at the next
// start.
type ReloadResult struct {
	Applied      []string `json:"applied"`
	NeedsRestart []string `json:"needsRestart"`
}

// reloadMetric counts reloads by result: applied or refused.
func (a *Agent) reloadMetric() error {
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshfed_config_reloads_total",
		Help: "Reloads of the configuration file (SIGHUP, POST /api/v1/reload), by result: applied, or refused (the running configuration stays).",
	}, []string{"result"})
	for _, r := range []string{"applied", "refused"} {
		a.reloads.WithLabelValues(r)
	}
	return a.reg.Register(a.reloads)
}

// Reload re-reads the configuration file (ConfigPath), checks it as meshfed
// run does, and applies what can change while the agent runs (liveFields);
// each other field that changed is reported by name, and logged, as taking
// effect at the next start. A file that does not pass the check changes
// nothing: the error names each finding's file, line and field, and wraps
// admin.ErrInvalid.
func (a *Agent) Reload(ctx context.Context) (ReloadResult, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	res, err := a.reload(ctx)
	if err != nil {
		a.reloads.WithLabelValues("refused").Inc()
		a.log.Error("configuration reload refused; the running configuration stays", zap.String("file", a.ConfigPath), zap.Error(err))
		return ReloadResult{}, err
	}
	a.reloads.WithLabelValues("applied").Inc()
	for _, f := range res.NeedsRestart {
		a.log.Warn("configuration field changed; it takes effect when the agent restarts", zap.String("field", f))
	}
	a.log.Info("configuration reloaded", zap.String("file", a.ConfigPath), zap.Strings("applied", res.Applied), zap.Strings("needsRestart", res.NeedsRestart))
	return res, nil
}

func (a *Agent) reload(ctx context.Context) (ReloadResult, error) {
	if a.ConfigPath == "" {
		return ReloadResult{}, errors.New("the agent was started without a configuration file to reload")
	}
	report := preflight.Check(a.ConfigPath, preflight.Options{SkipStore: true})
	if err := report.Err(); err != nil {
		return ReloadResult{}, refused{err}
	}
	next := report.Config
	live, err := a.liveBundles(next, changedFields(a.current, next), true)
	if err != nil {
		return ReloadResult{}, refused{err}
	}
	sc := scopeOf(a.current, next, live)
	res, peers, grace, backoff, gateways, exports := sc.res, sc.peers, sc.grace, sc.backoff, sc.gateways, sc.exports
	cur := *a.current
	cur.TrustBundles = withBundles(a.current, next, live)
	if peers {
		if err := a.Peers.SetPeers(a.peerSpecs(next)); err != nil {
			return ReloadResult{}, refused{fmt.Errorf("peers: %w", err)}
		}
		cur.Peers = next.Peers
		a.exports.setPeers(next.Peers)
	}
	if grace {
		if err := a.Peers.SetGrace(time.Duration(next.Federation.Grace)); err != nil {
			return ReloadResult{}, refused{err}
		}
		cur.Federation.Grace = next.Federation.Grace
	}
	if backoff {
		if err := a.Peers.SetMaxBackoff(time.Duration(next.Federation.MaxBackoff)); err != nil {
			return ReloadResult{}, refused{err}
		}
		cur.Federation.MaxBackoff = next.Federation.MaxBackoff
	}
	if gateways {
		cur.Gateways.Egress.HTTPRouteTimeout = next.Gateways.Egress.HTTPRouteTimeout
		cur.Gateways.Egress.StreamIdleTimeout = next.Gateways.Egress.StreamIdleTimeout
	}
	if peers || gateways {
		if err := a.Runner.SetSettings(ctx, a.gatewaySettings(&cur)); err != nil {
			return ReloadResult{}, err
		}
	}
	if exports {
		if err := a.reloadExports(ctx, next, &cur); err != nil {
			return ReloadResult{}, err
		}
	}
	a.dropBundles(a.current, &cur)
	a.current = &cur
	return res, nil
}

// dropBundles stops trusting the trust domains cur no longer has a bundle
// for. It runs once the reload applied everything else: the check refuses
// a configuration whose peers still need such a bundle, and the peers of
// that trust domain are gone by then.
func (a *Agent) dropBundles(prev, cur *config.Config) {
	for td := range prev.TrustBundles {
		if _, ok := cur.TrustBundles[td]; ok {
			continue
		}
		a.creds.bundles.Remove(spiffeid.RequireTrustDomainFromString(td))
		delete(a.heldBundles(), td)
	}
}

// reloadScope is what a reload from one configuration to the next does:
// the fields it applies and those that wait for a restart, and the parts
// of the agent the applied ones touch. A reload and a plan both follow it.
type reloadScope struct {
	res                                      ReloadResult
	peers, grace, backoff, gateways, exports bool
}

func scopeOf(cur, next *config.Config, liveBundles []string) reloadScope {
	s := reloadScope{res: ReloadResult{Applied: []string{}, NeedsRestart: []string{}}}
	changed := changedFields(cur, next)
	// A peer's trust bundle is loaded at start, but for a new trust
	// domain's (liveBundles): peers wait for the restart that brings
	// changed bundles.
	bundles := slices.ContainsFunc(changed, func(f string) bool { return under(f, "trustBundles") && !slices.Contains(liveBundles, f) })
	for _, f := range changed {
		if slices.Contains(liveBundles, f) {
			s.res.Applied = append(s.res.Applied, f)
			continue
		}
		if !live(f) || (bundles && under(f, "peers")) {
			s.res.NeedsRestart = append(s.res.NeedsRestart, f)
			continue
		}
		s.res.Applied = append(s.res.Applied, f)
		switch {
		case under(f, "peers"):
			s.peers = true
		case under(f, "federation.grace"):
			s.grace = true
		case under(f, "federation.maxBackoff"):
			s.backoff = true
		case under(f, "gateways"):
			s.gateways = true
		default:
			s.exports = true
		}
	}
	return s
}

// reloadExports replaces the source of the exports by next's.
func (a *Agent) reloadExports(ctx context.Context, next *config.Config, cur *config.Config) error {
	// The running connection to Consul stays: only what is exported
	// changes.
	var cc *consul.Config
	if a.current.Consul != nil && next.Consul != nil {
		c := *a.current.Consul
		c.Export = next.Consul.Export
		cc = &c
	}
	src, exports, err := a.exports.sources(next.Exports, cc)
	if err != nil {
		return refused{err}
	}
	if err := a.exports.replace(ctx, src, exports); err != nil {
		return err
	}
	cur.Exports = next.Exports
	if cur.Consul != nil && next.Consul != nil {
		c := *cur.Consul
		c.Export = next.Consul.Export
		cur.Consul = &c
	}
	return nil
}

// refused is a configuration the reload did not take; it is an
// admin.ErrInvalid.
type refused struct{ err error }

func (r refused) Error() string {
	return "configuration not reloaded; the running one stays: " + r.err.Error()
}

func (r refused) Unwrap() []error { return []error{admin.ErrInvalid, r.err} }

func live(field string) bool {
	return slices.ContainsFunc(liveFields, func(l string) bool { return under(field, l) })
}

// under reports whether field is top or one of its fields or elements.
func under(field, top string) bool {
	return field == top || strings.HasPrefix(field, top+".") || strings.HasPrefix(field, top+"[")
}

// changedFields lists the fields that differ between two configurations,
// by their names in the file (yaml), in the order of the file's schema:
// peers[mesh-b].dial, federation.grace, consul.export.consumers. Elements of
// a list that have a name are told apart by it.
func changedFields(old, next *config.Config) []string {
	var out []string
	diffValue("", reflect.ValueOf(*old), reflect.ValueOf(*next), &out)
	return out
}

func diffValue(path string, a, b reflect.Value, out *[]string) {
	if a.Kind() == reflect.Pointer {
		switch {
		case a.IsNil() && b.IsNil():
			return
		case a.IsNil() || b.IsNil():
			*out = append(*out, path)
			return
		}
		a, b = a.Elem(), b.Elem()
	}
	switch a.Kind() {
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			diffValue(join(path, name), a.Field(i), b.Field(i), out)
		}
	case reflect.Slice:
		if named(a.Type().Elem()) {
			diffNamed(path, a, b, out)
			return
		}
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
	case reflect.Map:
		keys := map[string]reflect.Value{}
		for _, k := range append(a.MapKeys(), b.MapKeys()...) {
			keys[fmt.Sprint(k.Interface())] = k
		}
		for _, ks := range slices.Sorted(maps.Keys(keys)) {
			k := keys[ks]
			av, bv := a.MapIndex(k), b.MapIndex(k)
			switch {
			case !av.IsValid() || !bv.IsValid():
				*out = append(*out, join(path, ks))
			default:
				diffValue(join(path, ks), av, bv, out)
			}
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
	}
}

// named reports whether t is a struct with a Name field, such as a peer.
func named(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	f, ok := t.FieldByName("Name")
	return ok && f.Type.Kind() == reflect.String
}

// diffNamed compares two lists of named elements by name: path[name] for
// one added or removed, and its fields for one in both.
func diffNamed(path string, a, b reflect.Value, out *[]string) {
	index := func(v reflect.Value) (map[string]reflect.Value, []string) {
		m := map[string]reflect.Value{}
		var order []string
		for i := range v.Len() {
			n := v.Index(i).FieldByName("Name").String()
			m[n] = v.Index(i)
			order = append(order, n)
		}
		return m, order
	}
	am, aOrder := index(a)
	bm, bOrder := index(b)
	for _, n := range aOrder {
		if bv, ok := bm[n]; ok {
			diffValue(path+"["+n+"]", am[n], bv, out)
		} else {
			*out = append(*out, path+"["+n+"]")
		}
	}
	for _, n := range bOrder {
		if _, ok := am[n]; !ok {
			*out = append(*out, path+"["+n+"]")
		}
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
