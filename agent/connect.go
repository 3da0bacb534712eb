package agent

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
	"github.com/meshfed/meshfed/registry/consul"
	"github.com/meshfed/meshfed/snapshot"
)

// consulConnect prepares Consul Connect's CA material for the gateways,
// when consul.connect is configured, and learns the datacenter Consul
// names the imports in (consul.datacenter, else the agent's own, else
// Consul's default, dc1, when the agent does not answer in time).
func (a *Agent) consulConnect(ctx context.Context) error {
	c := a.cfg.Consul
	if c == nil {
		return nil
	}
	a.consulDC = c.Datacenter
	if c.Connect == nil {
		if a.consulDC == "" {
			a.consulDC = defaultConsulDatacenter
		}
		return nil
	}
	cc, err := consul.NewConnect(*c, a.log.Named("consul"))
	if err != nil {
		return err
	}
	a.connect = cc
	if c.Import != nil && c.Connect.Port != 0 {
		// The egress holds the leaves of the imports' Consul names,
		// which sidecars reach.
		template := c.Import.NameTemplate
		a.published.connect = cc.SetServices
		a.published.connectName = func(imp model.Import) string {
			if n := registry.ImportName(template, imp.Service.Name, imp.Peer); registry.IsLabel(n) {
				return n
			}
			return ""
		}
	}
	if a.consulDC == "" {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		dc, err := cc.Datacenter(ctx)
		if err != nil {
			dc = defaultConsulDatacenter
			a.log.Warn("consul: the agent did not tell its datacenter; Consul names and Connect use the default (set consul.datacenter)",
				zap.String("datacenter", dc), zap.Error(err))
		}
		a.consulDC = dc
	}
	cc.UseDatacenter(a.consulDC)
	return nil
}

const defaultConsulDatacenter = "dc1"

// consulInput is what the translation reads of the Consul mesh beside the
// gateways; nil without one.
func (a *Agent) consulInput(cfg *config.Config) *snapshot.Consul {
	c := cfg.Consul
	if c == nil || c.Import == nil && c.Connect == nil {
		return nil
	}
	out := &snapshot.Consul{Datacenter: a.consulDC, Domain: c.Domain}
	if c.Import != nil {
		out.NameTemplate = c.Import.NameTemplate
	}
	if cc := c.Connect; cc != nil {
		out.ConnectPort, out.IngressIdentity = cc.Port, cc.Identity
	}
	return out
}

// secretsChanged signals when the gateways' certificates changed: the
// SVIDs and bundles, and Connect's material.
func (a *Agent) secretsChanged() (<-chan struct{}, func()) {
	identity, cancel := a.creds.all.Subscribe()
	if a.connect == nil {
		return identity, cancel
	}
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-identity:
			case <-a.connect.Changed():
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out, func() { close(done); cancel() }
}
