// Package agent assembles one meshfed agent from its configuration: the
// identity sources, the store and catalog, the Hamlet peers and listener,
// the translation of the catalog for the gateways and the xDS server.
package agent

import (
	"context"
	"fmt"
	"sync"
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
	"github.com/meshfed/meshfed/snapshot/cache"
	"github.com/meshfed/meshfed/snapshot/runner"
	"github.com/meshfed/meshfed/store"
	"github.com/meshfed/meshfed/xds"
)

// Agent is a running meshfed agent.
type Agent struct {
	cfg     *config.Config
	log     *zap.Logger
	creds   *credentials
	store   *store.Store
	Catalog *catalog.Catalog
	Peers   *peer.Manager
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
	// exports offers the local services to export to the catalog.
	exports *exportFeed
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
	// reloaded (what applies live).
	reloadMu sync.Mutex
	current  *config.Config
	reloads  *prometheus.CounterVec
	// joinMu serializes joins; loadedBundles are the trust bundle sources
	// the agent's bundle set holds by trust domain, once a reload changed
	// them (liveBundles, dropBundles): nil, those of the start.
	joinMu        sync.Mutex
	loadedBundles map[string]config.BundleSource
}

// New builds the agent and restores its imports; nothing listens yet.
func New(ctx context.Context, cfg *config.Config, log *zap.Logger, reg *prometheus.Registry) (_ *Agent, err error) {
	// The result is not named a: every "return nil, err" would set it to
	// nil before the deferred close ran.
	a := &Agent{cfg: cfg, log: log, reg: reg, listening: make(chan struct{}), configured: make(chan struct{}),
		current: cfg, published: newPublished(cfg.Gateways.Egress.Advertise, log)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := a.reloadMetric(); err != nil {
		return nil, err
	}
	if a.creds, err = newCredentials(ctx, cfg, log, reg, certs.NewMetrics(reg)); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() error { a.creds.close(); return nil })
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
	pc.Catalog, pc.TLS, pc.Ingress = a.Catalog, peer.SPIFFETLS{SVID: a.creds.svid, Bundles: a.creds.bundles}, a.ingress
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
	if a.exports, err = newExportFeed(cfg, a.Catalog, log); err != nil {
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
	if id, err := certs.RoleID(a.creds.td, model.Ingress); err == nil {
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
