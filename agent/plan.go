package agent

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/preflight"
	"github.com/meshfed/meshfed/registry/file"
	"github.com/meshfed/meshfed/snapshot"
)

// Plan is what a reload of a configuration (and its registry file) would
// change, computed without applying anything: POST /api/v1/plan, meshfed
// plan, meshfed reload --dry-run.
type Plan struct {
	// Config is the configuration file planned; Registry the registry
	// file read instead of the one it names, when one was given.
	Config   string `json:"config"`
	Registry string `json:"registry,omitempty"`
	// Changes says whether anything below would change.
	Changes  bool          `json:"changes"`
	Peers    PeerPlan      `json:"peers"`
	Exports  []ExportPlan  `json:"exports"`
	Gateways []GatewayPlan `json:"gateways"`
	// Applied are the fields a reload applies while the agent runs,
	// NeedsRestart those that take effect at the next start, as a reload
	// answers them.
	Applied      []string `json:"applied"`
	NeedsRestart []string `json:"needsRestart"`
	// Rejected are the services whose translation would fail the Envoy
	// checks (their last good resources stay served).
	Rejected []PlanRejection `json:"rejected"`
	// Notes say what the plan could not know.
	Notes []string `json:"notes"`
}

// PeerPlan lists the peers added, removed and changed, by name.
type PeerPlan struct {
	Added   []string     `json:"added"`
	Removed []string     `json:"removed"`
	Changed []PeerChange `json:"changed"`
}

// PeerChange is a peer that stays, with the fields of it that change.
type PeerChange struct {
	Name   string   `json:"name"`
	Fields []string `json:"fields"`
}

// ExportPlan is what one peer would gain and lose of the exports, by
// service name.
type ExportPlan struct {
	Peer   string   `json:"peer"`
	Gained []string `json:"gained"`
	Lost   []string `json:"lost"`
}

// GatewayPlan is what the gateways of one role would be sent.
type GatewayPlan struct {
	Role      model.Role       `json:"role"`
	Added     int              `json:"added"`
	Changed   int              `json:"changed"`
	Removed   int              `json:"removed"`
	Resources []ResourceChange `json:"resources"`
}

// ResourceChange is one resource added, changed or removed.
type ResourceChange struct {
	Change string `json:"change"`
	// Type is clusters, endpoints, listeners, scopedRoutes or secrets, as
	// a config dump names them.
	Type string `json:"type"`
	Name string `json:"name"`
}

// PlanRejection is a service the translation would leave out.
type PlanRejection struct {
	Kind  string `json:"kind"`
	Peer  string `json:"peer,omitempty"`
	ID    string `json:"id"`
	Error string `json:"error"`
}

// The changes of a resource, in the order a plan lists them.
const (
	resourceAdded   = "added"
	resourceChanged = "changed"
	resourceRemoved = "removed"
)

// Plan answers what a reload of req's configuration would change: it reads
// and checks the file as a reload does, takes the fields a reload would
// apply, translates the would-be catalog with snapshot.Build and compares
// the result with what the cache serves now. Nothing is applied. The
// files a request names must lie in the folder of the agent's own
// configuration (or, for the registry, of its registry file): a plan reads
// them with the agent's rights and answers with what it found.
func (a *Agent) Plan(_ context.Context, req admin.PlanRequest) (Plan, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cfgPath, registryPath, err := a.planPaths(req)
	if err != nil {
		return Plan{}, err
	}
	report := preflight.Check(cfgPath, preflight.Options{SkipStore: true})
	if err := report.Err(); err != nil {
		return Plan{}, fmt.Errorf("configuration not planned: %w", refusedPlan{err})
	}
	next := report.Config
	live, err := a.liveBundles(next, changedFields(a.current, next), false)
	if err != nil {
		return Plan{}, err
	}
	sc := scopeOf(a.current, next, live)
	p := Plan{Config: cfgPath, Registry: registryPath, Applied: sc.res.Applied, NeedsRestart: sc.res.NeedsRestart,
		Exports: []ExportPlan{}, Gateways: []GatewayPlan{}, Rejected: []PlanRejection{}, Notes: []string{}}
	p.Peers = peerPlan(a.current, next, slices.Concat(sc.res.Applied, sc.res.NeedsRestart))

	// would is the configuration the agent would run after the reload.
	would := *a.current
	if sc.peers {
		would.Peers = next.Peers
	}
	if sc.gateways {
		would.Gateways.Egress.HTTPRouteTimeout = next.Gateways.Egress.HTTPRouteTimeout
		would.Gateways.Egress.StreamIdleTimeout = next.Gateways.Egress.StreamIdleTimeout
	}
	if sc.exports {
		would.Exports = next.Exports
		if would.Consul != nil && next.Consul != nil {
			c := *would.Consul
			c.Export = next.Consul.Export
			would.Consul = &c
		}
	}
	exports, err := a.plannedExports(&would, registryPath, &p)
	if err != nil {
		return Plan{}, err
	}
	p.Exports = exportPlan(a.current.Peers, a.Catalog.Exports(), would.Peers, exports)

	in, err := a.plannedInput(&would, exports)
	if err != nil {
		return Plan{}, err
	}
	built := snapshot.Build(in)
	for _, r := range built.Rejected {
		p.Rejected = append(p.Rejected, PlanRejection{Kind: r.Key.Kind.String(), Peer: r.Key.Peer, ID: r.Key.ID, Error: r.Err.Error()})
	}
	for _, role := range model.GatewayRoles {
		g, err := a.gatewayPlan(role, built.ByRole[role])
		if err != nil {
			return Plan{}, err
		}
		p.Gateways = append(p.Gateways, g)
	}
	p.Changes = len(p.Applied)+len(p.NeedsRestart) > 0 || len(p.Peers.Added)+len(p.Peers.Removed)+len(p.Peers.Changed) > 0 ||
		slices.ContainsFunc(p.Exports, func(e ExportPlan) bool { return len(e.Gained)+len(e.Lost) > 0 }) ||
		slices.ContainsFunc(p.Gateways, func(g GatewayPlan) bool { return len(g.Resources) > 0 })
	return p, nil
}

// refusedPlan is a configuration that does not pass the check; it is an
// admin.ErrInvalid.
type refusedPlan struct{ err error }

func (r refusedPlan) Error() string   { return r.err.Error() }
func (r refusedPlan) Unwrap() []error { return []error{admin.ErrInvalid, r.err} }

// planPaths are the files a plan reads: req's, once they are known to lie
// where the agent already reads its own.
func (a *Agent) planPaths(req admin.PlanRequest) (cfgPath, registryPath string, err error) {
	if a.ConfigPath == "" {
		return "", "", fmt.Errorf("the agent was started without a configuration file to plan against: %w", admin.ErrInvalid)
	}
	own, err := filepath.Abs(a.ConfigPath)
	if err != nil {
		return "", "", err
	}
	cfgPath = own
	if req.Config != "" {
		if cfgPath, err = inFolder("config", req.Config, filepath.Dir(own)); err != nil {
			return "", "", err
		}
	}
	if req.Registry != "" {
		folders := []string{filepath.Dir(own)}
		if f := a.current.Exports.File; f != "" {
			abs, err := filepath.Abs(f)
			if err != nil {
				return "", "", err
			}
			if d := filepath.Dir(abs); d != folders[0] {
				folders = append(folders, d)
			}
		}
		if registryPath, err = inFolder("registry", req.Registry, folders...); err != nil {
			return "", "", err
		}
	}
	return cfgPath, registryPath, nil
}

// inFolder is path, cleaned, when it is absolute and directly in one of
// folders.
func inFolder(field, path string, folders ...string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%s: %q is not an absolute path: %w", field, path, admin.ErrBadRequest)
	}
	path = filepath.Clean(path)
	if slices.Contains(folders, filepath.Dir(path)) {
		return path, nil
	}
	return "", fmt.Errorf("%s: %q is not in %s: a plan reads files with the agent's rights, so only beside those it reads already: %w",
		field, path, strings.Join(folders, " or "), admin.ErrBadRequest)
}

// peerPlan compares the peers of two configurations; fields are the
// changed fields of the whole configuration.
func peerPlan(cur, next *config.Config, fields []string) PeerPlan {
	out := PeerPlan{Added: []string{}, Removed: []string{}, Changed: []PeerChange{}}
	had := map[string]bool{}
	for _, p := range cur.Peers {
		had[p.Name] = true
	}
	has := map[string]bool{}
	for _, p := range next.Peers {
		has[p.Name] = true
		if !had[p.Name] {
			out.Added = append(out.Added, p.Name)
			continue
		}
		prefix := "peers[" + p.Name + "]"
		var changed []string
		for _, f := range fields {
			if strings.HasPrefix(f, prefix+".") {
				changed = append(changed, strings.TrimPrefix(f, prefix+"."))
			}
		}
		if len(changed) > 0 {
			out.Changed = append(out.Changed, PeerChange{Name: p.Name, Fields: changed})
		}
	}
	for _, p := range cur.Peers {
		if !has[p.Name] {
			out.Removed = append(out.Removed, p.Name)
		}
	}
	slices.Sort(out.Added)
	slices.Sort(out.Removed)
	slices.SortFunc(out.Changed, func(a, b PeerChange) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// plannedExports are the exports the agent would offer: those of the
// registry file (registryPath instead, when set) and, with consul.export,
// those it holds now from Consul, which a plan does not ask.
func (a *Agent) plannedExports(would *config.Config, registryPath string, p *Plan) ([]model.Export, error) {
	path := would.Exports.File
	if registryPath != "" {
		path = registryPath
	}
	var out []model.Export
	if path != "" {
		var err error
		if out, err = file.Read(path, would.Exports.MaxFileBytes); err != nil {
			return nil, fmt.Errorf("exports.file: %w", refusedPlan{err})
		}
	}
	if would.Consul == nil || would.Consul.Export == nil {
		return out, nil
	}
	// The exports from Consul are those held now that the running
	// registry file does not give.
	fromFile := map[string]bool{}
	if f := a.current.Exports.File; f != "" {
		running, err := file.Read(f, a.current.Exports.MaxFileBytes)
		if err != nil {
			return nil, fmt.Errorf("exports.file: %w", err)
		}
		for _, e := range running {
			fromFile[e.Name] = true
		}
	}
	taken := map[string]bool{}
	for _, e := range out {
		taken[e.Name] = true
	}
	for _, e := range a.Catalog.Exports() {
		if !fromFile[e.Name] && !taken[e.Name] {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(x, y model.Export) int { return strings.Compare(x.Name, y.Name) })
	p.Notes = append(p.Notes, "the exports from Consul (consul.export) are taken as the agent holds them now: a plan does not ask Consul")
	return out, nil
}

// exportPlan compares, for every peer configured before or after, the
// exports it may consume.
func exportPlan(curPeers []config.Peer, cur []model.Export, nextPeers []config.Peer, next []model.Export) []ExportPlan {
	consumed := func(peers []config.Peer, exports []model.Export) map[string]map[string]bool {
		out := map[string]map[string]bool{}
		for _, p := range peers {
			out[p.Name] = map[string]bool{}
		}
		for _, e := range exports {
			for _, c := range e.Consumers {
				if out[c] != nil {
					out[c][e.Name] = true
				}
			}
		}
		return out
	}
	before, after := consumed(curPeers, cur), consumed(nextPeers, next)
	names := map[string]bool{}
	for n := range before {
		names[n] = true
	}
	for n := range after {
		names[n] = true
	}
	out := []ExportPlan{}
	for _, peer := range slices.Sorted(maps.Keys(names)) {
		e := ExportPlan{Peer: peer, Gained: []string{}, Lost: []string{}}
		for _, s := range slices.Sorted(maps.Keys(after[peer])) {
			if !before[peer][s] {
				e.Gained = append(e.Gained, s)
			}
		}
		for _, s := range slices.Sorted(maps.Keys(before[peer])) {
			if !after[peer][s] {
				e.Lost = append(e.Lost, s)
			}
		}
		if len(e.Gained)+len(e.Lost) > 0 {
			out = append(out, e)
		}
	}
	return out
}

// plannedInput is the whole input the gateways would be translated from:
// the imports of the peers that stay, the planned exports, the egress
// ports and the certificates in use now.
func (a *Agent) plannedInput(would *config.Config, exports []model.Export) (*snapshot.Input, error) {
	peers := map[string]bool{}
	for _, p := range would.Peers {
		peers[p.Name] = true
	}
	secrets, err := a.secrets()
	if err != nil {
		return nil, fmt.Errorf("the gateways' certificates: %w", err)
	}
	in := &snapshot.Input{Settings: a.gatewaySettings(would), Exports: exports, EgressPorts: a.Runner.Ports(), Secrets: secrets}
	for _, imp := range a.Catalog.Imports() {
		if peers[imp.Peer] {
			in.Imports = append(in.Imports, imp)
		}
	}
	return in, nil
}

// gatewayPlan compares what the cache serves a role now with built, by
// type and name.
func (a *Agent) gatewayPlan(role model.Role, built map[string][]types.Resource) (GatewayPlan, error) {
	g := GatewayPlan{Role: role, Resources: []ResourceChange{}}
	for _, dt := range dumpTypes {
		served := map[string]proto.Message{}
		for _, r := range a.Cache.Resources(role, dt.typeURL) {
			m, err := r.GetResource().UnmarshalNew()
			if err != nil {
				return GatewayPlan{}, fmt.Errorf("reading the served %s %q: %w", dt.name, r.GetName(), err)
			}
			served[r.GetName()] = m
		}
		var changes []ResourceChange
		for _, r := range built[dt.typeURL] {
			name := gcache.GetResourceName(r)
			old, ok := served[name]
			delete(served, name)
			switch {
			case !ok:
				changes = append(changes, ResourceChange{Change: resourceAdded, Type: dt.name, Name: name})
				g.Added++
			case !proto.Equal(old, r):
				changes = append(changes, ResourceChange{Change: resourceChanged, Type: dt.name, Name: name})
				g.Changed++
			}
		}
		for name := range served {
			changes = append(changes, ResourceChange{Change: resourceRemoved, Type: dt.name, Name: name})
			g.Removed++
		}
		slices.SortFunc(changes, func(x, y ResourceChange) int { return strings.Compare(x.Name, y.Name) })
		g.Resources = append(g.Resources, changes...)
	}
	return g, nil
}
