// Package agent assembles one meshfed agent from its configuration: the
// identity sources, the store and catalog, the Hamlet peers and listener,
// the translation of the catalog for the gateways and the xDS server.
package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshfed/meshfed/registry/consul"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
	"github.com/meshfed/meshfed/snapshot/cache"
	"github.com/meshfed/meshfed/snapshot/runner"
	"github.com/meshfed/meshfed/store"
	"github.com/meshfed/meshfed/xds"
)

// Agent is a running meshfed agent.
type Agent struct {
	cfg     *config.Config
	log     *zap.Logger
	td      spiffeid.TrustDomain
	svid    certs.SVIDSource
	bundles *certs.BundleSet
	store   *store.Store
	Catalog *catalog.Catalog
	Peers   *peer.Manager
	// Identity holds every role's SVID and the bundles, for SDS.
	Identity *certs.Identity
	// connect is Consul Connect's CA material, with consul.connect; consulDC
	// is the datacenter Consul names things in.
	connect  *consul.Connect
	consulDC string
	// Cache is what the gateways are served; Runner keeps it in step with
	// the catalog; XDS serves it.
	Cache  *cache.Cache
	Runner *runner.Runner
	XDS    *xds.Server
	reg    *prometheus.Registry
	// certMetrics count what certs does: rotations, fetches, refused
	// bundle endpoint handshakes.
	certMetrics *certs.Metrics
	// bundleSrv serves this mesh's bundle when bundleEndpoint is set.
	bundleSrv *certs.BundleServer
	// exportSrc yields the local services to export (nil when none is
	// configured) until a reload replaces it; sinks receive the imports.
	exportSrc registry.Source
	// liveExports is the source of the exports running now (a reload
	// replaces it), for its own status.
	liveExports atomic.Pointer[registry.Source]
	// exportHealth is how running exportSrc goes.
	exportHealth *sink
	// published is what this mesh's workloads see of the imports: DNS
	// names, registries, Consul names.
	published *published
	listening chan struct{}
	// configured is closed once the gateways' first configuration is
	// built (startGateways).
	configured chan struct{}
	// BundleWait, when set before Run, is how long the gateways' first
	// configuration waits for peers' trust bundles that have never loaded;
	// zero is DefaultBundleWait.
	BundleWait time.Duration
	// held serves the gateways, past that wait, the bundles they were
	// last served for the peers whose bundle has still not loaded.
	held    *heldBundles
	addrs   *listeners
	closers []func() error
	// LogLevel, when set before Run, is the logger's level, which the
	// admin API then reads and changes (from loopback only).
	LogLevel *zap.AtomicLevel
	// ConfigPath, when set before Run, is the configuration file that
	// Reload re-reads (POST /api/v1/reload, from loopback only; SIGHUP).
	ConfigPath string

	// reloadMu serializes reloads; current is the configuration as
	// reloaded (what applies live), swapExports hands a new source of the
	// exports to the loop running it.
	reloadMu    sync.Mutex
	current     *config.Config
	swapExports chan exportSwap
	reloads     *prometheus.CounterVec
}

// New builds the agent and restores its imports; nothing listens yet.
func New(ctx context.Context, cfg *config.Config, log *zap.Logger, reg *prometheus.Registry) (_ *Agent, err error) {
	// The result is not named a: every "return nil, err" would set it to
	// nil before the deferred close ran.
	a := &Agent{cfg: cfg, log: log, td: spiffeid.RequireTrustDomainFromString(cfg.TrustDomain), reg: reg, listening: make(chan struct{}), configured: make(chan struct{}),
		current: cfg, swapExports: make(chan exportSwap),
		exportHealth: &sink{name: "exports", state: SinkStatus{Name: "exports", Healthy: true}},
		published:    newPublished(cfg.Gateways.Egress.Advertise, log)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	cm := certs.NewMetrics(reg)
	a.certMetrics = cm
	if err := a.reloadMetric(); err != nil {
		return nil, err
	}
	if err := a.identity(ctx, cm); err != nil {
		return nil, err
	}
	if a.store, err = store.Open(cfg.Store.Path, store.WithLog(log)); err != nil {
		return nil, fmt.Errorf("store.path: %w", err)
	}
	a.closers = append(a.closers, a.store.Close)
	if a.held, err = loadHeldBundles(a.store, log); err != nil {
		return nil, err
	}
	a.Catalog = catalog.New(a.store, log)
	specs := a.peerSpecs(cfg)
	pc := peerConfig(cfg)
	pc.Catalog, pc.TLS, pc.Ingress = a.Catalog, peer.SPIFFETLS{SVID: a.svid, Bundles: a.bundles}, a.ingress
	pc.Log, pc.Registerer = log, reg
	a.Peers, err = peer.NewManager(pc, specs)
	if err != nil {
		return nil, err
	}
	recs, err := a.store.Imports()
	if err != nil {
		return nil, err
	}
	if err := a.Catalog.Restore(recs); err != nil {
		return nil, err
	}
	log.Info("restored imports from the store", zap.Int("imports", len(a.Catalog.Imports())), zap.String("path", cfg.Store.Path))
	if err := a.loadExports(); err != nil {
		return nil, err
	}
	if err := a.consul(); err != nil {
		return nil, err
	}
	if err := a.consulConnect(ctx); err != nil {
		return nil, err
	}
	// The first configuration is built from the restored state before
	// anything is served, so a gateway reconnecting to a restarted agent
	// gets what it had.
	if err := a.gateways(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) identity(ctx context.Context, cm *certs.Metrics) error {
	id := a.cfg.Identity
	// An SVID of another trust domain or role, or not valid now, is
	// refused at start as meshfed check refuses it, and later never
	// replaces a good one.
	settle := time.Duration(id.SettleTime)
	switch {
	case id.WorkloadAPI != "":
		src, err := certs.NewWorkloadSVIDSource(ctx, certs.WorkloadSVIDConfig{Role: model.Agent, Addr: id.WorkloadAPI, TrustDomain: a.td}, a.log, cm)
		if err != nil {
			return err
		}
		a.svid = src
		a.closers = append(a.closers, src.Close)
	default:
		src, err := certs.NewFileSVIDSource(certs.FileSVIDConfig{Role: model.Agent, CertFile: id.Agent.Cert, KeyFile: id.Agent.Key,
			TrustDomain: a.td, Settle: settle}, a.log, cm)
		if err != nil {
			return fmt.Errorf("identity.agent: %w", err)
		}
		a.svid = src
		a.closers = append(a.closers, src.Close)
	}
	svids := []certs.SVIDSource{a.svid}
	for _, g := range []struct {
		role model.Role
		f    *config.Files
	}{{model.Egress, id.Egress}, {model.Ingress, id.Ingress}} {
		src, err := certs.NewFileSVIDSource(certs.FileSVIDConfig{Role: g.role, CertFile: g.f.Cert, KeyFile: g.f.Key,
			TrustDomain: a.td, Settle: settle}, a.log, cm)
		if err != nil {
			return fmt.Errorf("identity.%s: %w", g.role, err)
		}
		a.closers = append(a.closers, src.Close)
		svids = append(svids, src)
	}
	a.bundles = certs.NewBundleSet(a.log, cm)
	a.bundles.SetSettleTime(settle)
	a.closers = append(a.closers, a.bundles.Close)
	if err := a.trustBundles(); err != nil {
		return err
	}
	if err := a.bundleServer(cm); err != nil {
		return err
	}
	identity, err := certs.NewIdentity(a.bundles, svids...)
	if err != nil {
		return err
	}
	a.Identity = identity
	a.closers = append(a.closers, identity.Close)
	return a.reg.Register(certs.NewExpiryCollector(identity))
}

// bundleServer prepares this mesh's bundle endpoint, when configured: the
// agent's SVID (https_spiffe) or the web certificate (https_web) as server
// certificate, and the refresh hint derived from the SVID unless set.
func (a *Agent) bundleServer(cm *certs.Metrics) error {
	be := a.cfg.BundleEndpoint
	if be == nil {
		return nil
	}
	cfg := certs.BundleServerConfig{TrustDomain: a.td, Bundles: a.bundles, RefreshHint: time.Duration(be.RefreshHint), SVID: a.svid, Metrics: cm}
	if f := be.WebCertificate; f != nil {
		w, err := certs.NewWebCertificate(f.Cert, f.Key, time.Duration(a.cfg.Identity.SettleTime), a.log, cm)
		if err != nil {
			return fmt.Errorf("bundleEndpoint.webCertificate: %w", err)
		}
		a.closers = append(a.closers, w.Close)
		cfg.SVID, cfg.Web = nil, w
	}
	if cfg.RefreshHint == 0 {
		life, err := certs.SVIDLifetime(a.svid)
		if err != nil {
			return fmt.Errorf("bundleEndpoint.refreshHint: %w", err)
		}
		cfg.RefreshHint = certs.DefaultRefreshHint(life)
	}
	srv, err := certs.NewBundleServer(cfg, a.log)
	if err != nil {
		return fmt.Errorf("bundleEndpoint: %w", err)
	}
	a.bundleSrv = srv
	a.log.Info("bundle endpoint configured", zap.String("profile", be.Profile), zap.Duration("refresh_hint", cfg.RefreshHint))
	return nil
}

// trustBundles adds each trust domain's bundle source, in name order so
// logs and errors come out the same on every start. Files come first: an
// https_spiffe endpoint of one trust domain may be authenticated with
// another's bundle from a file.
func (a *Agent) trustBundles() error {
	names := slices.Sorted(maps.Keys(a.cfg.TrustBundles))
	for _, name := range names {
		if f := a.cfg.TrustBundles[name].File; f != "" {
			if err := a.bundles.AddFile(spiffeid.RequireTrustDomainFromString(name), f); err != nil {
				return fmt.Errorf("trustBundles.%s.file: %w", name, err)
			}
		}
	}
	for _, name := range names {
		e := a.cfg.TrustBundles[name].Endpoint
		if e == nil {
			continue
		}
		ec := certs.EndpointConfig{
			TrustDomain: spiffeid.RequireTrustDomainFromString(name), URL: e.URL, Profile: certs.Profile(e.Profile),
			BootstrapFile: e.BootstrapBundle, WebCAFile: e.CAFile, SavedFile: a.cfg.SavedBundlePath(name),
		}
		if e.SPIFFEID != "" {
			ec.EndpointID = spiffeid.RequireFromString(e.SPIFFEID)
		}
		if err := a.bundles.AddEndpoint(ec); err != nil {
			return fmt.Errorf("trustBundles.%s.endpoint: %w", name, err)
		}
	}
	return nil
}

func (a *Agent) peerSpecs(cfg *config.Config) []peer.Spec {
	var out []peer.Spec
	for _, p := range cfg.Peers {
		if p.AnyIDInTrustDomain {
			a.log.Warn("peer accepts any SPIFFE ID of its trust domain as its agent, a workload's too; list its agent's spiffeIds instead",
				zap.String("peer", p.Name), zap.String("trustDomain", p.TrustDomain))
		}
		pol := validate.Policy{TrustDomain: spiffeid.RequireTrustDomainFromString(p.TrustDomain), DeniedCIDRs: cfg.DeniedPrefixes(), AllowLoopback: p.AllowLoopback}
		for _, s := range p.SANTrustDomains {
			pol.SANTrustDomains = append(pol.SANTrustDomains, spiffeid.RequireTrustDomainFromString(s))
		}
		out = append(out, peer.Spec{
			Peer: catalog.Peer{
				Peer:        model.Peer{Name: p.Name, TrustDomain: p.TrustDomain, SPIFFEIDs: p.SPIFFEIDs},
				MaxServices: p.MaxServices,
				Alias:       p.Alias,
				Policy:      pol,
			},
			AnyIDInTrustDomain: p.AnyIDInTrustDomain,
			Dial:               p.Dial,
			Context:            p.Context,
			RequireContext:     p.RequireContext,
		})
	}
	return out
}

// peerConfig is what the peer manager reads from the configuration, which
// has given every field its default.
func peerConfig(cfg *config.Config) peer.Config {
	return peer.Config{
		Window:     cfg.Federation.Window,
		Grace:      time.Duration(cfg.Federation.Grace),
		Retention:  time.Duration(cfg.Federation.Retention),
		MaxBatch:   cfg.Federation.MaxBatch,
		BatchDelay: time.Duration(*cfg.Federation.BatchDelay),
		// A peer may send as many services in one response as a
		// transaction here stores.
		ServicesPerResponse: cfg.Federation.MaxBatch,

		MaxBackoff:             time.Duration(cfg.Federation.MaxBackoff),
		HandshakeTimeout:       time.Duration(cfg.Federation.HandshakeTimeout),
		MaxHandshakes:          cfg.Federation.MaxHandshakes,
		MaxHandshakesPerSource: cfg.Federation.MaxHandshakesPerSource,
	}
}

// ingress is what peers are told: this mesh's ingress addresses, and the
// identity its ingress gateway presents.
func (a *Agent) ingress() wire.Ingress {
	in := wire.Ingress{}
	for _, e := range a.cfg.Federation.Ingress {
		in.Endpoints = append(in.Endpoints, model.Endpoint{Address: e.Address, Port: e.Port})
	}
	if id, err := certs.RoleID(a.td, model.Ingress); err == nil {
		in.SANs = []string{id.String()}
	}
	return in
}

func (a *Agent) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.log.Warn("closing", zap.Error(err))
		}
	}
	a.closers = nil
}
