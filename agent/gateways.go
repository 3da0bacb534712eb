package agent

import (
	"fmt"

	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/cache"
	"github.com/meshfed/meshfed/snapshot/runner"
	"github.com/meshfed/meshfed/xds"
)

// egressPortBucket is the store bucket of the egress listener ports, by
// snapshot.EgressKey: the ports must survive restarts.
const egressPortBucket = "egress-ports"

// gateways builds the cache, the runner that fills it and the xDS server;
// Run builds the first configuration (startGateways).
func (a *Agent) gateways() error {
	g := a.cfg.Gateways
	a.Cache = cache.New(a.nodeRole, a.log)
	changed, cancel := a.secretsChanged()
	a.closers = append(a.closers, func() error { cancel(); return nil })
	ports, err := runner.NewAllocator(a.store.Bucket(egressPortBucket), runner.PortRange{From: g.Egress.Ports.From, To: g.Egress.Ports.To})
	if err != nil {
		return err
	}
	a.Runner, err = runner.New(runner.Config{
		Source:         runner.CatalogSource(a.Catalog),
		Ports:          ports,
		Sink:           a.Cache,
		Settings:       a.gatewaySettings(a.cfg),
		Secrets:        a.secrets,
		SecretsChanged: changed,
		Holdoff:        time.Duration(a.cfg.XDS.Holdoff),
		MaxDelay:       time.Duration(a.cfg.XDS.MaxDelay),
		Applied:        a.published.apply,
		Log:            a.log,
		Registerer:     a.reg,
	})
	if err != nil {
		return err
	}
	xc := xdsConfig(a.cfg)
	xc.Cache, xc.NodeRole, xc.Logger, xc.Registerer = a.Cache, a.nodeRole, a.log, a.reg
	if a.connect != nil {
		xc.ConnectAuthorize = a.connect.Authorize
	}
	if t := a.cfg.XDS.TLS; t != nil {
		// Gateways of this mesh only, each then held to its node ids.
		xc.TLS = certs.ServerTLSConfig(a.creds.svid, a.creds.bundles, tlsconfig.AuthorizeMemberOf(a.creds.td))
		xc.AuthorizeNode = gatewayNodes(t.Gateways)
	}
	a.XDS, err = xds.New(xc)
	return err
}

// xdsConfig is what the xDS server reads from the configuration, which
// has given every field its default and checked its range.
func xdsConfig(cfg *config.Config) xds.Config {
	return xds.Config{
		Address:              cfg.XDS.Listen,
		MaxRecvMsgSize:       cfg.XDS.MaxRequestBytes,
		MaxConcurrentStreams: uint32(cfg.XDS.MaxStreamsPerConnection),
		MaxStreamsPerNode:    cfg.XDS.MaxStreamsPerNode,

		MaxStreamsPerIdentity: cfg.XDS.MaxStreamsPerIdentity,
		MaxStreams:            cfg.XDS.MaxStreams,
		FirstRequestTimeout:   time.Duration(cfg.XDS.FirstRequestTimeout),

		HandshakeTimeout:       time.Duration(cfg.XDS.HandshakeTimeout),
		MaxHandshakes:          cfg.XDS.MaxHandshakes,
		MaxHandshakesPerSource: cfg.XDS.MaxHandshakesPerSource,
	}
}

// gatewaySettings is gatewaySettings of cfg, with the Consul mesh beside
// the gateways.
func (a *Agent) gatewaySettings(cfg *config.Config) snapshot.Settings {
	s := gatewaySettings(cfg)
	s.Consul = a.consulInput(cfg)
	return s
}

// gatewaySettings is what the translation of the gateways' resources
// reads from the configuration. The ingress admits a peer's callers, not
// its agent's IDs.
func gatewaySettings(cfg *config.Config) snapshot.Settings {
	g := cfg.Gateways
	var peers []model.Peer
	for _, p := range cfg.Peers {
		peers = append(peers, model.Peer{Name: p.Name, TrustDomain: p.TrustDomain, SPIFFEIDs: p.Callers, IstioALPN: p.IstioALPN})
	}
	return snapshot.Settings{
		TrustDomain:       cfg.TrustDomain,
		HTTPRouteTimeout:  time.Duration(*g.Egress.HTTPRouteTimeout),
		StreamIdleTimeout: time.Duration(*g.Egress.StreamIdleTimeout),
		EgressSources:     g.Egress.AllowedSources,
		Peers:             peers,
		Gateways: snapshot.Gateways{
			Egress:  snapshot.Address{Address: g.Egress.Listen.Address},
			Ingress: snapshot.SocketAddress{Address: g.Ingress.Listen.Address, Port: g.Ingress.Listen.Port},
		},
	}
}

// gatewayNodes authorizes a gateway identity to the node ids configured
// for it in xds.tls.gateways.
func gatewayNodes(gateways []config.XDSGateway) func(spiffeid.ID, string) error {
	allowed := map[string][]string{}
	for _, g := range gateways {
		allowed[g.SPIFFEID] = append(allowed[g.SPIFFEID], g.NodeIDs...)
	}
	return func(id spiffeid.ID, node string) error {
		nodes, ok := allowed[id.String()]
		switch {
		case !ok:
			return fmt.Errorf("%s is not in xds.tls.gateways", id)
		case !slices.Contains(nodes, node):
			return fmt.Errorf("xds.tls.gateways gives it %v", nodes)
		}
		return nil
	}
}

// secrets reads the gateways' certificates for SDS.
func (a *Agent) secrets() (snapshot.Secrets, error) {
	out := snapshot.Secrets{SVIDs: map[model.Role]snapshot.SVID{}, Bundles: map[string]string{}}
	for _, role := range model.GatewayRoles {
		m, err := a.creds.all.SVID(role)
		if err != nil {
			return snapshot.Secrets{}, err
		}
		out.SVIDs[role] = snapshot.SVID{CertChain: string(m.ChainPEM), PrivateKey: string(m.KeyPEM)}
	}
	for _, td := range a.creds.all.TrustDomains() {
		b, err := a.creds.all.Bundle(td)
		if err != nil {
			return snapshot.Secrets{}, fmt.Errorf("bundle of %s: %w", td, err)
		}
		out.Bundles[td.String()] = string(b.PEM)
	}
	if a.connect != nil {
		out.Consul = a.connect.Material()
	}
	a.held.apply(out.Bundles)
	return out, nil
}
