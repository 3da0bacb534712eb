package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/agent"
)

func gatewaysCmd() *cobra.Command {
	var f agentFlags
	c := &cobra.Command{
		Use:   "gateways",
		Short: "List the connected gateways and, per type, whether they hold what the agent serves",
		Long: `List every gateway connected to the agent's xDS server and, per type, the
version the agent wants it to hold, the version it last ACKed, and its
state: SYNCED, STALE (not ACKed yet), NACKED (with the gateway's reason),
or UNSERVED (a node id that is not one of this agent's gateways).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var v []agent.GatewayView
			if err := f.get(c.Context(), "/api/v1/gateways", &v); err != nil {
				return err
			}
			return f.print(c.OutOrStdout(), v, func(w *tabwriter.Writer) { gatewaysTable(w, v) })
		},
	}
	f.add(c, true)
	return c
}

// gatewaysTable has a line per gateway and type. Versions are shown
// whole: a content hash cut short could match another's.
func gatewaysTable(w *tabwriter.Writer, gateways []agent.GatewayView) {
	fmt.Fprintln(w, "GATEWAY\tROLE\tSTREAM\tTYPE\tSTATE\tWANTED\tACKED\tNACK REASON")
	if len(gateways) == 0 {
		none(w, "no gateway is connected")
	}
	for _, g := range gateways {
		for _, t := range g.Types {
			reason := "-"
			if t.State == agent.Nacked && t.LastNack != nil {
				reason = t.LastNack.Reason
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.NodeID, g.Role, g.Stream, shortType(t.TypeURL), t.State,
				dash(t.WantedVersion), dash(t.AckedVersion), reason)
		}
	}
}

// dumpSections are the parts of a config dump that meshfed gateway config
// NODE TYPE asks for.
var dumpSections = []string{"clusters", "endpoints", "listeners", "scopedRoutes", "secrets"}

func gatewayCmd() *cobra.Command {
	c := &cobra.Command{Use: "gateway", Short: "Inspect one gateway"}
	var f agentFlags
	config := &cobra.Command{
		Use:   "config NODE [clusters|listeners|scopedRoutes|endpoints|secrets]",
		Short: "Print what the agent serves the gateway of node id NODE, as Envoy's config_dump shows it",
		Long: `Print what the agent serves the connected gateway of node id NODE, in the
shape of Envoy's /config_dump (dynamic resources, endpoints included), or
only the part of one type. Private keys are shown as "[redacted]".`,
		Args: cobra.RangeArgs(1, 2),
		ValidArgsFunction: func(c *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return dumpSections, cobra.ShellCompDirectiveNoFileComp
			}
			return complete(&f, "/api/v1/gateways", func(v []agent.GatewayView) (names []string) {
				for _, g := range v {
					if !slices.Contains(names, g.NodeID) {
						names = append(names, g.NodeID)
					}
				}
				slices.Sort(names)
				return names
			})(c, args, "")
		},
		RunE: func(c *cobra.Command, args []string) error {
			path := "/api/v1/gateways/" + url.PathEscape(args[0]) + "/config_dump"
			if len(args) == 2 {
				if !slices.Contains(dumpSections, args[1]) {
					return fmt.Errorf("%q is not clusters, listeners, scopedRoutes, endpoints or secrets", args[1])
				}
				path += "?type=" + args[1]
			}
			if err := checkOutput(f.output, "yaml", "json"); err != nil {
				return err
			}
			// Kept as the agent wrote it: decoded into Go values, every
			// number would become a float64.
			var dump json.RawMessage
			if err := f.get(c.Context(), path, &dump); err != nil {
				return err
			}
			return printDump(c.OutOrStdout(), f.output, dump)
		},
	}
	f.add(config, false)
	addOutput(config, &f.output, "yaml", "json")
	c.AddCommand(config)
	return c
}

func printDump(w io.Writer, output string, dump json.RawMessage) error {
	if output == "json" {
		var b bytes.Buffer
		if err := json.Indent(&b, dump, "", "  "); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := b.WriteTo(w)
		return err
	}
	return writeYAML(w, dump)
}
