package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/config"
	envoyconfigs "github.com/meshfed/meshfed/envoy-configs"
)

const bootstrapLong = `Write the Envoy bootstrap of this agent's egress or ingress gateway, with
the comments that explain each field: the node id (gateways.*.nodeIds),
how to reach the agent's xDS (xds.listen: its Unix socket, or host:port
with mutual TLS when xds.tls is set, with the gateway's SVID of identity.*
and this mesh's trust bundle), the admin and stats addresses and the heap
and connection limits. Flags set what differs per host; --instance N
gives the Nth further Envoy of a role on one host ports and a --base-id
of its own.

Start Envoy with the command line the file's header gives, e.g.
  envoy --config-path egress.yaml --base-id 0 --drain-time-s 5`

type bootstrapFlags struct {
	config, out, nodeID, admin, stats, xds       string
	xdsCert, xdsKey, xdsBundle, agentID, maxHeap string
	maxConnections                               uint64
	instance                                     uint32
}

func bootstrapCmd() *cobra.Command {
	var f bootstrapFlags
	c := &cobra.Command{
		Use:       "bootstrap egress|ingress",
		Short:     "Write the Envoy bootstrap of a gateway of this agent",
		Long:      bootstrapLong,
		Args:      cobra.ExactArgs(1),
		ValidArgs: envoyconfigs.Roles,
		RunE: func(c *cobra.Command, args []string) error {
			b, err := f.bootstrap(args[0], c)
			if err != nil {
				return err
			}
			if f.out == "" || f.out == "-" {
				_, err = c.OutOrStdout().Write(b)
				return err
			}
			return writeFileAtomic(f.out, b)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.config, "config", "meshfed.yaml", "the agent's configuration file")
	fl.StringVarP(&f.out, "output", "o", "", "file to write (standard output by default)")
	fl.Uint32Var(&f.instance, "instance", 0, "the Nth further Envoy of this role on the host: ports 2N above the first's, --base-id of its own")
	fl.StringVar(&f.nodeID, "node-id", "", "node id (default: the first of gateways.<role>.nodeIds)")
	fl.StringVar(&f.admin, "admin", "", "admin interface, host:port on loopback (default 127.0.0.1:19000 egress, 127.0.0.1:19001 ingress)")
	fl.StringVar(&f.stats, "stats", "", "prometheus listener, host:port (default 127.0.0.1:15090 egress, 127.0.0.1:15091 ingress)")
	fl.StringVar(&f.xds, "xds", "", "the agent's xDS as this gateway reaches it: unix:///path or host:port (default: xds.listen)")
	fl.StringVar(&f.xdsCert, "xds-cert", "", "with mutual TLS: the gateway's SVID certificate (default: identity.<role>.cert)")
	fl.StringVar(&f.xdsKey, "xds-key", "", "with mutual TLS: the gateway's SVID key (default: identity.<role>.key)")
	fl.StringVar(&f.xdsBundle, "xds-bundle", "", "with mutual TLS: the bundle the agent's SVID chains to (default: this trust domain's trustBundles file)")
	fl.StringVar(&f.agentID, "agent-id", "", "with mutual TLS: the agent's SPIFFE ID (default spiffe://<trustDomain>/meshfed/agent)")
	fl.StringVar(&f.maxHeap, "max-heap", "1Gi", "heap limit of the overload manager: bytes, or a number of Ki, Mi or Gi")
	fl.Uint64Var(&f.maxConnections, "max-connections", envoyconfigs.DefaultMaxConnections, "most downstream connections")
	return c
}

// bootstrap is the bootstrap of role for the agent of f.config.
func (f *bootstrapFlags) bootstrap(role string, c *cobra.Command) ([]byte, error) {
	o, err := envoyconfigs.DefaultOptions(role, f.instance)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		return nil, err
	}
	ids, files := cfg.Gateways.Egress.NodeIDs, cfg.Identity.Egress
	if role == "ingress" {
		ids, files = cfg.Gateways.Ingress.NodeIDs, cfg.Identity.Ingress
	}
	o.NodeID = ids[0]
	set := func(dst *string, flag, value string) {
		if c.Flags().Changed(flag) {
			*dst = value
		}
	}
	set(&o.NodeID, "node-id", f.nodeID)
	set(&o.Admin, "admin", f.admin)
	set(&o.Stats, "stats", f.stats)
	if err := loopback("--admin", o.Admin); err != nil {
		return nil, err
	}
	if o.MaxHeapBytes, err = envoyconfigs.ParseBytes(f.maxHeap); err != nil {
		return nil, fmt.Errorf("--max-heap: %w", err)
	}
	o.MaxConnections = f.maxConnections

	tls := envoyconfigs.ClientTLS{AgentID: "spiffe://" + cfg.TrustDomain + "/meshfed/agent"}
	if files != nil {
		tls.CertFile, tls.KeyFile = files.Cert, files.Key
	}
	if b, ok := cfg.TrustBundles[cfg.TrustDomain]; ok {
		tls.BundleFile = b.File
	}
	set(&tls.CertFile, "xds-cert", f.xdsCert)
	set(&tls.KeyFile, "xds-key", f.xdsKey)
	set(&tls.BundleFile, "xds-bundle", f.xdsBundle)
	set(&tls.AgentID, "agent-id", f.agentID)
	o.ExampleTLS = tls

	o.XDS = cfg.XDS.Listen
	if f.xds != "" {
		o.XDS = f.xds
	} else if err := dialable(o.XDS); err != nil {
		return nil, err
	}
	if cfg.XDS.TLS != nil {
		for _, v := range []struct{ flag, file string }{{"--xds-cert", tls.CertFile}, {"--xds-key", tls.KeyFile}, {"--xds-bundle", tls.BundleFile}} {
			if v.file == "" {
				return nil, fmt.Errorf("%s: xds.tls is set, and the configuration does not say where this file of the gateway is", v.flag)
			}
		}
		o.XDSTLS = &tls
	}
	return envoyconfigs.Generate(o)
}

// loopback refuses an admin address beyond loopback: the admin interface
// can quit Envoy and dump its configuration, private keys aside.
func loopback(flag, hostPort string) error {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, hostPort, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%s %q: the admin interface can quit Envoy; it listens on a loopback IP only", flag, hostPort)
	}
	return nil
}

// dialable refuses an xds.listen that names every address rather than one
// a gateway can dial.
func dialable(listen string) error {
	if strings.HasPrefix(listen, "unix://") {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("xds.listen %q: %w", listen, err)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		return fmt.Errorf("xds.listen %q is every address of the agent's host: give the address this gateway dials with --xds", listen)
	}
	return nil
}

// writeFileAtomic replaces path by a rename, so that an Envoy that reads
// it never reads half of it.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
