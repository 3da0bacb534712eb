package main

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/certs"
)

func certsCmd() *cobra.Command {
	c := &cobra.Command{Use: "certs", Short: "Development certificates: a CA per trust domain, and SVIDs"}
	c.AddCommand(certsInitCmd(), certsIssueCmd())
	return c
}

func certsInitCmd() *cobra.Command {
	var td, out string
	var caTTL, leafTTL time.Duration
	var overwrite bool
	c := &cobra.Command{
		Use:   "init",
		Short: "Write a development CA and the SVIDs of the agent and its gateways",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			d, err := spiffeid.TrustDomainFromString(td)
			if err != nil {
				return fmt.Errorf("--trust-domain %q: %w", td, err)
			}
			if err := certs.InitDevCA(certs.DevCAOptions{Dir: out, TrustDomain: d, CATTL: caTTL, LeafTTL: leafTTL, Overwrite: overwrite}); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote a development CA for %s and SVIDs for agent, egress and ingress to %s\n", d.Name(), out)
			return nil
		},
	}
	c.Flags().StringVar(&td, "trust-domain", "", "SPIFFE trust domain, e.g. mesh-a.example")
	c.Flags().StringVar(&out, "out", "", "folder to write into")
	c.Flags().DurationVar(&caTTL, "ca-ttl", certs.DefaultCATTL, "lifetime of the CA")
	c.Flags().DurationVar(&leafTTL, "ttl", certs.DefaultLeafTTL, "lifetime of each SVID")
	c.Flags().BoolVar(&overwrite, "overwrite", false, "replace an existing CA")
	_ = c.MarkFlagRequired("trust-domain")
	_ = c.MarkFlagRequired("out")
	return c
}

func certsIssueCmd() *cobra.Command {
	var caDir, id, out, name string
	var dnsNames, ips []string
	c := &cobra.Command{
		Use:   "issue",
		Short: "Issue one more SVID from a development CA",
		Long: `Issue one more SVID from a development CA. The SVID has exactly one URI SAN,
its SPIFFE ID; --dns and --ip add DNS name and IP address SANs for peers that
are not SPIFFE-aware and verify a host name or address instead.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			sid, err := spiffeid.FromString(id)
			if err != nil {
				return fmt.Errorf("--spiffe-id %q: %w", id, err)
			}
			opts, err := sanOptions(dnsNames, ips)
			if err != nil {
				return err
			}
			if err := certs.IssueSVID(caDir, sid, out, name, opts...); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote %s.pem and %s-key.pem for %s to %s\n", name, name, sid, out)
			return nil
		},
	}
	c.Flags().StringVar(&caDir, "ca", "", "folder of the CA (ca.pem, ca-key.pem)")
	c.Flags().StringVar(&id, "spiffe-id", "", "SPIFFE ID of the new SVID")
	c.Flags().StringVar(&out, "out", "", "folder to write into")
	c.Flags().StringVar(&name, "name", "svid", "file name stem: NAME.pem and NAME-key.pem")
	c.Flags().StringArrayVar(&dnsNames, "dns", nil, "DNS name SAN, e.g. hamlet.mesh-a.example or *.mesh-a.example (repeatable)")
	c.Flags().StringArrayVar(&ips, "ip", nil, "IP address SAN, e.g. 192.0.2.10 (repeatable)")
	for _, f := range []string{"ca", "spiffe-id", "out"} {
		_ = c.MarkFlagRequired(f)
	}
	return c
}

// sanOptions checks --dns and --ip, naming the flag and value at fault.
func sanOptions(dnsNames, ips []string) ([]certs.CertOption, error) {
	var opts []certs.CertOption
	for _, n := range dnsNames {
		if err := certs.CheckDNSName(n); err != nil {
			return nil, fmt.Errorf("--dns %q: %w", n, err)
		}
	}
	if len(dnsNames) > 0 {
		opts = append(opts, certs.WithDNSNames(dnsNames...))
	}
	addrs := make([]netip.Addr, 0, len(ips))
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("--ip %q is not an IP address", s)
		}
		addrs = append(addrs, ip)
	}
	if len(addrs) > 0 {
		opts = append(opts, certs.WithIPAddresses(addrs...))
	}
	return opts, nil
}
