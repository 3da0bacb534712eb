package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/meshfed/meshfed/certs"
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
	close(a.listening)
	g, ctx := errgroup.WithContext(ctx)
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
	g.Go(func() error { return a.Runner.Run(ctx) })
	g.Go(func() error { return a.XDS.Serve(ctx, listeners.xds) })
	if be := a.cfg.BundleEndpoint; be != nil {
		bundleSrv, err := certs.NewBundleServer(certs.BundleServerConfig{Addr: be.Listen, TrustDomain: a.td, Bundles: a.bundles, SVID: a.svid}, a.log)
		if err != nil {
			return err
		}
		g.Go(func() error {
			a.log.Info("serving this mesh's trust bundle", zap.String("address", be.Listen))
			if err := bundleSrv.ListenAndServeTLS("", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("bundleEndpoint: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			return bundleSrv.Close()
		})
	}
	for _, run := range a.extra {
		g.Go(func() error { return run(ctx) })
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

type listeners struct {
	federation, xds net.Listener
}

// Listening is closed once Run listens on every address.
func (a *Agent) Listening() <-chan struct{} { return a.listening }

// FederationAddr is the address peers connect to; valid after Listening.
func (a *Agent) FederationAddr() net.Addr { return a.addrs.federation.Addr() }

// XDSAddr is the address gateways connect to; valid after Listening.
func (a *Agent) XDSAddr() net.Addr { return a.addrs.xds.Addr() }

// listen opens every listener before anything is served, so that a port in
// use fails the start instead of one part of a running agent.
func (a *Agent) listen() (*listeners, error) {
	var l listeners
	var err error
	if l.federation, err = net.Listen("tcp", a.cfg.Federation.Listen); err != nil {
		return nil, fmt.Errorf("federation.listen: %w", err)
	}
	if l.xds, err = xds.Listen(a.cfg.XDS.Listen); err != nil {
		_ = l.federation.Close()
		return nil, fmt.Errorf("xds.listen: %w", err)
	}
	return &l, nil
}
