package bench

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/cache"
	"github.com/meshfed/meshfed/snapshot/runner"
	"github.com/meshfed/meshfed/store"
)

// The systems compared.
const (
	SystemMeshfed  = "meshfed"
	SystemSnapshot = "snapshot"
	SystemLinear   = "linear"
)

// Systems lists every system, meshfed first.
var Systems = []string{SystemMeshfed, SystemSnapshot, SystemLinear}

// egressPorts is the range of dedicated egress listener ports, for meshfed
// and the baselines alike.
var egressPorts = runner.PortRange{From: 20000, To: 65000}

// system is a control plane under test: it follows the catalog and serves
// the egress gateways through Cache.
type system interface {
	// cache is what the xDS server serves.
	cache() gcache.Cache
	// start builds the first state from the catalog, then follows it until
	// ctx ends; it returns after the first state is served.
	start(ctx context.Context) error
	// port returns the egress listener port of an imported instance, when
	// known before the change that needs it is translated.
	port(peer, resourceID, instanceID string) (uint32, bool)
	// ports returns every allocated egress listener port.
	ports() map[string]uint32
	// served is what the system serves of a type: delta versions by name
	// (nil when not known) and the state-of-the-world version ("" when not
	// known).
	served(typeURL string, delta bool) (map[string]string, string)
	// applied counts the batches of changes the system made served.
	applied() uint64
	// wait returns once the goroutines of start ended, after ctx ended.
	wait()
}

type systemEnv struct {
	catalog *catalog.Catalog
	store   *store.Store
	input   snapshot.Input
	holdoff time.Duration
	nodes   []string
	// role is that of every gateway served: egress unless set (only the
	// meshfed system serves another).
	role model.Role
}

func newSystem(name string, env systemEnv) (system, error) {
	switch name {
	case SystemMeshfed:
		return newMeshfed(env)
	case SystemSnapshot:
		return &snapshotSystem{env: env, alloc: newPortAlloc(), sc: gcache.NewSnapshotCache(true, gcache.IDHash{}, quiet)}, nil
	case SystemLinear:
		return newLinear(env), nil
	}
	return nil, fmt.Errorf("unknown system %q (want one of %v)", name, Systems)
}

// quiet discards go-control-plane's logs (LinearCache logs every watch at
// info level by default).
var quiet = log.LoggerFuncs{}

// servesAs gives every gateway role, as the xDS server and meshfed's
// cache see it.
func servesAs(role model.Role) cache.NodeRole {
	return func(string) (model.Role, bool) { return role, true }
}

// meshfedSystem is the real thing: the runner translating catalog changes
// per service into meshfed's incremental cache.
type meshfedSystem struct {
	role    model.Role
	c       *cache.Cache
	r       *runner.Runner
	done    chan struct{}
	batches atomic.Uint64
}

func newMeshfed(env systemEnv) (*meshfedSystem, error) {
	role := cmp.Or(env.role, model.Egress)
	s := &meshfedSystem{role: role, c: cache.New(servesAs(role), nil), done: make(chan struct{})}
	secrets := env.input.Secrets
	ports, err := runner.NewAllocator(env.store.Bucket("egress-ports"), egressPorts)
	if err != nil {
		return nil, err
	}
	r, err := runner.New(runner.Config{
		Source:   runner.CatalogSource(env.catalog),
		Ports:    ports,
		Sink:     s.c,
		Settings: env.input.Settings,
		Secrets:  func() (snapshot.Secrets, error) { return secrets, nil },
		Holdoff:  env.holdoff, MaxDelay: config.DefaultMaxDelay,
		Applied: func([]snapshot.ServedImport) { s.batches.Add(1) },
	})
	if err != nil {
		return nil, err
	}
	s.r = r
	return s, nil
}

func (s *meshfedSystem) cache() gcache.Cache { return s.c }

func (s *meshfedSystem) start(ctx context.Context) error {
	if err := s.r.Start(); err != nil {
		close(s.done)
		return err
	}
	go func() {
		defer close(s.done)
		_ = s.r.Run(ctx)
	}()
	return nil
}

func (s *meshfedSystem) port(peer, resourceID, instanceID string) (uint32, bool) {
	return s.r.EgressPort(peer, resourceID, instanceID)
}

func (s *meshfedSystem) ports() map[string]uint32 { return s.r.Ports() }

func (s *meshfedSystem) served(typeURL string, _ bool) (map[string]string, string) {
	out := map[string]string{}
	for _, r := range s.c.Resources(s.role, typeURL) {
		out[r.Name] = r.Version
	}
	return out, s.c.Version(s.role, typeURL)
}

func (s *meshfedSystem) applied() uint64 { return s.batches.Load() }
func (s *meshfedSystem) wait()           { <-s.done }

// portAlloc gives the baselines egress listener ports: on first sight of a
// key, never released (a run adds few services).
type portAlloc struct {
	mu    sync.Mutex
	next  uint32
	byKey map[string]uint32
}

func newPortAlloc() *portAlloc {
	return &portAlloc{next: egressPorts.From, byKey: map[string]uint32{}}
}

func (a *portAlloc) port(key string) (uint32, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.byKey[key]; ok {
		return p, true
	}
	if a.next > egressPorts.To {
		return 0, false
	}
	a.byKey[key] = a.next
	a.next++
	return a.byKey[key], true
}

func (a *portAlloc) all() map[string]uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]uint32, len(a.byKey))
	for k, v := range a.byKey {
		out[k] = v
	}
	return out
}

// assign fills in.EgressPorts for every instance of the imports that needs
// a dedicated listener.
func (a *portAlloc) assign(in *snapshot.Input) { in.EgressPorts = a.of(in.Imports) }

// of gives the ports of every instance of imports that needs a dedicated
// listener.
func (a *portAlloc) of(imports []model.Import) map[string]uint32 {
	out := map[string]uint32{}
	for _, k := range snapshot.EgressPortKeys(imports) {
		if p, ok := a.port(k); ok {
			out[k] = p
		}
	}
	return out
}

// snapshotSystem is the usual use of go-control-plane's SnapshotCache: on
// every change, translate the whole catalog again and set the new snapshot
// (one object) for every gateway's node id.
type snapshotSystem struct {
	env   systemEnv
	alloc *portAlloc
	sc    gcache.SnapshotCache
	done  chan struct{}

	batches atomic.Uint64

	mu   sync.Mutex
	snap *gcache.Snapshot
	ver  int
}

func (s *snapshotSystem) cache() gcache.Cache { return s.sc }

func (s *snapshotSystem) rebuild(ctx context.Context) error {
	in := s.env.input
	in.Imports = s.env.catalog.Imports()
	s.alloc.assign(&in)
	res := snapshot.Build(&in)
	s.ver++
	snap, err := gcache.NewSnapshot(strconv.Itoa(s.ver), res.ByRole[model.Egress])
	if err != nil {
		return err
	}
	for _, node := range s.env.nodes {
		if err := s.sc.SetSnapshot(ctx, node, snap); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
	s.batches.Add(1)
	return nil
}

func (s *snapshotSystem) start(ctx context.Context) error {
	s.done = make(chan struct{})
	sub := s.env.catalog.Subscribe()
	if err := s.rebuild(ctx); err != nil {
		sub.Close()
		close(s.done)
		return err
	}
	go func() {
		defer close(s.done)
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.C():
			}
			sub.Drain()
			if err := s.rebuild(ctx); err != nil && ctx.Err() == nil {
				panic(fmt.Sprintf("snapshot baseline: %v", err)) // the translation is known good
			}
		}
	}()
	return nil
}

func (s *snapshotSystem) port(peer, resourceID, instanceID string) (uint32, bool) {
	return s.alloc.port(snapshot.EgressKey(peer, resourceID, instanceID))
}
func (s *snapshotSystem) ports() map[string]uint32 { return s.alloc.all() }

func (s *snapshotSystem) served(typeURL string, delta bool) (map[string]string, string) {
	s.mu.Lock()
	snap := s.snap
	s.mu.Unlock()
	if !delta {
		return nil, snap.GetVersion(typeURL)
	}
	// Built when the snapshot was set for the delta streams already.
	if err := snap.ConstructVersionMap(); err != nil {
		return nil, ""
	}
	return snap.GetVersionMap(typeURL), ""
}

func (s *snapshotSystem) applied() uint64 { return s.batches.Load() }
func (s *snapshotSystem) wait()           { <-s.done }

// linearSystem keeps one go-control-plane LinearCache per type behind a
// MuxCache, and on every change updates the resources the translator
// changed for the changed services: the same translation as meshfed's,
// another cache.
type linearSystem struct {
	env    systemEnv
	alloc  *portAlloc
	caches map[string]*gcache.LinearCache
	mux    *gcache.MuxCache
	done   chan struct{}

	batches atomic.Uint64

	// Owned by the goroutine following the catalog.
	tr *snapshot.Translator
}

func newLinear(env systemEnv) *linearSystem {
	s := &linearSystem{env: env, alloc: newPortAlloc(), caches: map[string]*gcache.LinearCache{}}
	caches := map[string]gcache.Cache{}
	for _, t := range snapshot.Types {
		lc := gcache.NewLinearCache(t, gcache.WithLogger(quiet))
		s.caches[t], caches[t] = lc, lc
	}
	s.mux = &gcache.MuxCache{
		Classify:      func(r *gcache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *gcache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        caches,
	}
	return s
}

func (s *linearSystem) cache() gcache.Cache { return s.mux }

func (s *linearSystem) start(ctx context.Context) error {
	s.done = make(chan struct{})
	s.tr = snapshot.NewTranslator(s.env.input.Settings)
	sub := s.env.catalog.Subscribe()
	imports := s.env.catalog.Imports()
	ch := snapshot.Changes{Secrets: &s.env.input.Secrets, Ports: s.alloc.of(imports)}
	for i := range imports {
		ch.Imports = append(ch.Imports, snapshot.ImportChange{Key: model.ImportKey(imports[i]), Import: &imports[i]})
	}
	state := snapshot.State{}
	state.Add(s.tr.Apply(ch))
	for _, t := range snapshot.Types {
		s.caches[t].SetResources(state[model.Egress][t])
	}
	go func() {
		defer close(s.done)
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.C():
			}
			if err := s.step(sub.Drain()); err != nil && ctx.Err() == nil {
				panic(fmt.Sprintf("linear baseline: %v", err))
			}
		}
	}()
	return nil
}

func (s *linearSystem) step(keys []model.Key) error {
	var ch snapshot.Changes
	var imports []model.Import
	for _, k := range keys {
		if k.Kind != model.KindImport {
			continue
		}
		c := snapshot.ImportChange{Key: k}
		if imp, ok := s.env.catalog.Import(k.Peer, k.ID); ok {
			c.Import = &imp
			imports = append(imports, imp)
		}
		ch.Imports = append(ch.Imports, c)
	}
	ch.Ports = s.alloc.of(imports)
	// The last change of a name is its outcome (a listener can go with
	// one service and come back with another in one batch).
	last := map[string]map[string]types.Resource{}
	for _, c := range s.tr.Apply(ch).Changes[model.Egress] {
		if last[c.TypeURL] == nil {
			last[c.TypeURL] = map[string]types.Resource{}
		}
		last[c.TypeURL][c.Name] = c.Resource
	}
	updates := map[string]map[string]types.Resource{}
	deletes := map[string][]string{}
	for t, byName := range last {
		for name, r := range byName {
			if r == nil {
				deletes[t] = append(deletes[t], name)
				continue
			}
			if updates[t] == nil {
				updates[t] = map[string]types.Resource{}
			}
			updates[t][name] = r
		}
	}
	for _, t := range snapshot.Types {
		if len(updates[t]) == 0 && len(deletes[t]) == 0 {
			continue
		}
		if err := s.caches[t].UpdateResources(updates[t], deletes[t]); err != nil {
			return err
		}
	}
	s.batches.Add(1)
	return nil
}

func (s *linearSystem) port(peer, resourceID, instanceID string) (uint32, bool) {
	return s.alloc.port(snapshot.EgressKey(peer, resourceID, instanceID))
}
func (s *linearSystem) ports() map[string]uint32 { return s.alloc.all() }

func (s *linearSystem) served(typeURL string, delta bool) (map[string]string, string) {
	if !delta {
		// LinearCache does not expose its version; content is checked.
		return nil, ""
	}
	out := map[string]string{}
	for name, r := range s.caches[typeURL].GetResources() {
		b, err := gcache.MarshalResource(r)
		if err != nil {
			return nil, ""
		}
		out[name] = gcache.HashResource(b)
	}
	return out, ""
}

func (s *linearSystem) applied() uint64 { return s.batches.Load() }
func (s *linearSystem) wait()           { <-s.done }
