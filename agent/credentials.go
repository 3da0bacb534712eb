package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
)

// credentials are this mesh's SVIDs (the agent's and each gateway's), the
// trust bundles of every trust domain it knows, and the bundle endpoint
// that serves its own: loaded at start, rotated by certs while the agent
// runs.
type credentials struct {
	// cfg is the configuration the agent started with: none of the
	// fields read here changes on a reload.
	cfg *config.Config
	log *zap.Logger
	td  spiffeid.TrustDomain
	// svid is the agent's own, for peers and the xDS server.
	svid    certs.SVIDSource
	bundles *certs.BundleSet
	// all holds every role's SVID and the bundles, for SDS.
	all *certs.Identity
	// server serves this mesh's bundle; nil unless bundleEndpoint is set.
	server  *certs.BundleServer
	closers []func() error
}

// newCredentials loads cfg's SVIDs and trust bundles and prepares the
// bundle endpoint; nothing is served yet.
func newCredentials(ctx context.Context, cfg *config.Config, log *zap.Logger, reg prometheus.Registerer, cm *certs.Metrics) (_ *credentials, err error) {
	c := &credentials{cfg: cfg, log: log, td: spiffeid.RequireTrustDomainFromString(cfg.TrustDomain)}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if err := c.load(ctx, cm); err != nil {
		return nil, err
	}
	return c, reg.Register(certs.NewExpiryCollector(c.all))
}

func (c *credentials) load(ctx context.Context, cm *certs.Metrics) error {
	id := c.cfg.Identity
	// An SVID of another trust domain or role, or not valid now, is
	// refused at start as meshfed check refuses it, and later never
	// replaces a good one.
	settle := time.Duration(id.SettleTime)
	switch {
	case id.WorkloadAPI != "":
		src, err := certs.NewWorkloadSVIDSource(ctx, certs.WorkloadSVIDConfig{Role: model.Agent, Addr: id.WorkloadAPI, TrustDomain: c.td}, c.log, cm)
		if err != nil {
			return err
		}
		c.svid = src
		c.closers = append(c.closers, src.Close)
	default:
		src, err := certs.NewFileSVIDSource(certs.FileSVIDConfig{Role: model.Agent, CertFile: id.Agent.Cert, KeyFile: id.Agent.Key,
			TrustDomain: c.td, Settle: settle}, c.log, cm)
		if err != nil {
			return fmt.Errorf("identity.agent: %w", err)
		}
		c.svid = src
		c.closers = append(c.closers, src.Close)
	}
	svids := []certs.SVIDSource{c.svid}
	for _, g := range []struct {
		role model.Role
		f    *config.Files
	}{{model.Egress, id.Egress}, {model.Ingress, id.Ingress}} {
		src, err := certs.NewFileSVIDSource(certs.FileSVIDConfig{Role: g.role, CertFile: g.f.Cert, KeyFile: g.f.Key,
			TrustDomain: c.td, Settle: settle}, c.log, cm)
		if err != nil {
			return fmt.Errorf("identity.%s: %w", g.role, err)
		}
		c.closers = append(c.closers, src.Close)
		svids = append(svids, src)
	}
	c.bundles = certs.NewBundleSet(c.log, cm)
	c.bundles.SetSettleTime(settle)
	c.closers = append(c.closers, c.bundles.Close)
	if err := c.trustBundles(); err != nil {
		return err
	}
	if err := c.bundleServer(cm); err != nil {
		return err
	}
	identity, err := certs.NewIdentity(c.bundles, svids...)
	if err != nil {
		return err
	}
	c.all = identity
	c.closers = append(c.closers, identity.Close)
	return nil
}

// bundleServer prepares this mesh's bundle endpoint, when configured: the
// agent's SVID (https_spiffe) or the web certificate (https_web) as server
// certificate, and the refresh hint derived from the SVID unless set.
func (c *credentials) bundleServer(cm *certs.Metrics) error {
	be := c.cfg.BundleEndpoint
	if be == nil {
		return nil
	}
	cfg := certs.BundleServerConfig{TrustDomain: c.td, Bundles: c.bundles, RefreshHint: time.Duration(be.RefreshHint), SVID: c.svid, Metrics: cm}
	if f := be.WebCertificate; f != nil {
		w, err := certs.NewWebCertificate(f.Cert, f.Key, time.Duration(c.cfg.Identity.SettleTime), c.log, cm)
		if err != nil {
			return fmt.Errorf("bundleEndpoint.webCertificate: %w", err)
		}
		c.closers = append(c.closers, w.Close)
		cfg.SVID, cfg.Web = nil, w
	}
	if cfg.RefreshHint == 0 {
		life, err := certs.SVIDLifetime(c.svid)
		if err != nil {
			return fmt.Errorf("bundleEndpoint.refreshHint: %w", err)
		}
		cfg.RefreshHint = certs.DefaultRefreshHint(life)
	}
	srv, err := certs.NewBundleServer(cfg, c.log)
	if err != nil {
		return fmt.Errorf("bundleEndpoint: %w", err)
	}
	c.server = srv
	c.log.Info("bundle endpoint configured", zap.String("profile", be.Profile), zap.Duration("refresh_hint", cfg.RefreshHint))
	return nil
}

// trustBundles adds each trust domain's bundle source, in name order so
// logs and errors come out the same on every start. Files come first: an
// https_spiffe endpoint of one trust domain may be authenticated with
// another's bundle from a file.
func (c *credentials) trustBundles() error {
	names := slices.Sorted(maps.Keys(c.cfg.TrustBundles))
	for _, name := range names {
		if f := c.cfg.TrustBundles[name].File; f != "" {
			if err := c.bundles.AddFile(spiffeid.RequireTrustDomainFromString(name), f); err != nil {
				return fmt.Errorf("trustBundles.%s.file: %w", name, err)
			}
		}
	}
	for _, name := range names {
		e := c.cfg.TrustBundles[name].Endpoint
		if e == nil {
			continue
		}
		ec := certs.EndpointConfig{
			TrustDomain: spiffeid.RequireTrustDomainFromString(name), URL: e.URL, Profile: certs.Profile(e.Profile),
			BootstrapFile: e.BootstrapBundle, WebCAFile: e.CAFile, SavedFile: c.cfg.SavedBundlePath(name),
		}
		if e.SPIFFEID != "" {
			ec.EndpointID = spiffeid.RequireFromString(e.SPIFFEID)
		}
		if err := c.bundles.AddEndpoint(ec); err != nil {
			return fmt.Errorf("trustBundles.%s.endpoint: %w", name, err)
		}
	}
	return nil
}

func (c *credentials) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		if err := c.closers[i](); err != nil {
			c.log.Warn("closing", zap.Error(err))
		}
	}
	c.closers = nil
}

// Identity holds every role's SVID and the trust bundles, as the gateways
// are served them.
func (a *Agent) Identity() *certs.Identity { return a.creds.all }
