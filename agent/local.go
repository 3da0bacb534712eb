package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/dnsserver"
	"github.com/meshfed/meshfed/registry/consul"
)

// Ready reports whether the agent serves: the store is restored, every
// listener open and the gateways' first configuration built.
func (a *Agent) Ready() error {
	select {
	case <-a.listening:
	default:
		return errors.New("starting: the listeners are not open yet")
	}
	select {
	case <-a.configured:
		return nil
	default:
		return fmt.Errorf("starting: waiting for the trust bundles of %s", strings.Join(a.missingPeers(), ", "))
	}
}

// consul adds Consul as a sink of imports, as configured.
func (a *Agent) consul() error {
	c := a.cfg.Consul
	if c == nil || c.Import == nil {
		return nil
	}
	sink, err := consul.NewSink(*c, a.log.Named("consul"))
	if err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	return a.addSink("consul", sink, c.Import.AntiEntropy)
}

// adminServer builds the admin server.
func (a *Agent) adminServer() (*admin.Server, error) {
	var reload func(context.Context) (any, error)
	if a.ConfigPath != "" {
		reload = func(ctx context.Context) (any, error) { return a.Reload(ctx) }
	}
	return admin.New(admin.Options{
		LogLevel:         a.LogLevel,
		Listen:           a.cfg.Admin.Listen,
		AllowNonLoopback: a.cfg.Admin.AllowNonLoopback,
		TokenFile:        a.cfg.Admin.TokenFile,
		Hosts:            a.cfg.Admin.Hosts,
		Gatherer:         a.reg,
		Ready:            a.Ready,
		Degraded:         a.Degraded,
		Status:           a.Status,
		Imports:          a.Imports,
		Exports:          a.Exports,
		Gateways:         a.Gateways,
		ConfigDump:       a.ConfigDump,
		Reload:           reload,
		StoreBackup: func(_ context.Context, open func(int64) io.Writer) error {
			return a.store.Backup(func(size int64) (io.Writer, error) { return open(size), nil })
		},
		PProf: a.cfg.Admin.PProf,
		Log:   a.log.Named("admin"),
	})
}

// dns builds the DNS server when configured.
func (a *Agent) dnsServer() (*dnsserver.Server, error) {
	if a.cfg.DNS.Listen == "" {
		return nil, nil
	}
	return dnsserver.New(dnsserver.Config{
		Listen:           a.cfg.DNS.Listen,
		AllowNonLoopback: a.cfg.DNS.AllowNonLoopback,
		Forward:          a.cfg.DNS.Forward,
		Log:              a.log.Named("dns"),
		Registerer:       a.reg,
	})
}
