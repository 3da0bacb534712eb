package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/dnsserver"
	"github.com/meshfed/meshfed/xds"
)

// Run serves peers, gateways and operators until ctx ends or a part fails;
// then it stops every part and closes the store.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	listeners, err := a.listen()
	if err != nil {
		return err
	}
	a.addrs = listeners
	a.published.dns = listeners.dns
	g, ctx := errgroup.WithContext(ctx)
	if len(a.creds.bundles.Missing()) == 0 {
		// Configured before Listening, as the first configuration needs
		// nothing more.
		if err := a.startGateways(ctx, 0); err != nil {
			return err
		}
		g.Go(func() error { return a.Runner.Run(ctx) })
	} else {
		wait := a.BundleWait
		if wait <= 0 {
			wait = DefaultBundleWait
		}
		g.Go(func() error {
			if err := a.startGateways(ctx, wait); err != nil {
				return err
			}
			return a.Runner.Run(ctx)
		})
	}
	close(a.listening)
	srv := a.Peers.NewServer()
	g.Go(func() error {
		a.log.Info("accepting Hamlet peers", zap.Stringer("address", listeners.federation.Addr()))
		if err := srv.Serve(listeners.federation); err != nil {
			return fmt.Errorf("federation listener: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			srv.Stop()
		}
		return nil
	})
	g.Go(func() error { a.Peers.Run(ctx); return nil })
	g.Go(func() error { a.creds.watchExpiry(ctx); return nil })
	g.Go(func() error { return a.XDS.Serve(ctx, listeners.xds) })
	if listeners.bundle != nil {
		a.serveBundle(ctx, g, listeners.bundle)
	}
	g.Go(func() error { return listeners.admin.Serve(ctx, listeners.adminLis) })
	if listeners.dns != nil {
		g.Go(func() error { return listeners.dns.Serve(ctx) })
	}
	g.Go(func() error { return a.exports.run(ctx) })
	if a.connect != nil {
		g.Go(func() error { return a.connect.Run(ctx) })
	}
	g.Go(func() error { a.published.run(ctx); return nil })
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

type listeners struct {
	federation, xds net.Listener
	// bundle is the bundle endpoint's TCP listener (its server does the
	// TLS), nil when off.
	bundle   net.Listener
	admin    *admin.Server
	adminLis net.Listener
	dns      *dnsserver.Server
}

// Listening is closed once Run listens on every address.
func (a *Agent) Listening() <-chan struct{} { return a.listening }

// FederationAddr is the address peers connect to; valid after Listening.
func (a *Agent) FederationAddr() net.Addr { return a.addrs.federation.Addr() }

// XDSAddr is the address gateways connect to; valid after Listening.
func (a *Agent) XDSAddr() net.Addr { return a.addrs.xds.Addr() }

// AdminAddr is the admin server's address; valid after Listening.
func (a *Agent) AdminAddr() net.Addr { return a.addrs.adminLis.Addr() }

// AdminPatterns are the routes the admin server serves, as "METHOD
// /path"; valid after Listening.
func (a *Agent) AdminPatterns() []string { return a.addrs.admin.Patterns() }

// BundleEndpointAddr is the bundle endpoint's address, nil when it is off;
// valid after Listening.
func (a *Agent) BundleEndpointAddr() net.Addr {
	if a.addrs.bundle == nil {
		return nil
	}
	return a.addrs.bundle.Addr()
}

// DNSAddr is the DNS server's address, nil when it is off; valid after
// Listening.
func (a *Agent) DNSAddr() net.Addr {
	if a.addrs.dns == nil {
		return nil
	}
	return a.addrs.dns.Addr()
}

// listen opens every listener before anything is served, so that a port in
// use fails the start instead of one part of a running agent.
func (a *Agent) listen() (*listeners, error) {
	var l listeners
	var err error
	if l.federation, err = net.Listen("tcp", a.cfg.Federation.Listen); err != nil {
		return nil, fmt.Errorf("federation.listen: %w", err)
	}
	closeAll := func() {
		for _, c := range []net.Listener{l.federation, l.xds, l.adminLis, l.bundle} {
			if c != nil {
				_ = c.Close()
			}
		}
	}
	if l.xds, err = xds.Listen(a.cfg.XDS.Listen); err != nil {
		closeAll()
		return nil, fmt.Errorf("xds.listen: %w", err)
	}
	if be := a.cfg.BundleEndpoint; be != nil {
		if l.bundle, err = net.Listen("tcp", be.Listen); err != nil {
			closeAll()
			return nil, fmt.Errorf("bundleEndpoint.listen: %w", err)
		}
	}
	if l.admin, err = a.adminServer(); err == nil {
		l.adminLis, err = l.admin.Listen()
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	if l.dns, err = a.dnsServer(); err == nil && l.dns != nil {
		err = l.dns.Listen()
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	a.log.Info("serving gateways and operators",
		zap.Stringer("xds", l.xds.Addr()), zap.Stringer("admin", l.adminLis.Addr()),
		zap.Bool("dns", l.dns != nil))
	return &l, nil
}

// serveBundle serves this mesh's bundle on ln until ctx ends.
func (a *Agent) serveBundle(ctx context.Context, g *errgroup.Group, ln net.Listener) {
	g.Go(func() error {
		a.log.Info("serving this mesh's trust bundle", zap.Stringer("address", ln.Addr()), zap.String("profile", a.cfg.BundleEndpoint.Profile))
		if err := a.creds.server.Serve(ln); err != nil {
			return fmt.Errorf("bundleEndpoint: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		return a.creds.server.Close()
	})
}
