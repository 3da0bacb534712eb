package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

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

// gatewaysTable has a line per gateway and type.
func gatewaysTable(w *tabwriter.Writer, gateways []agent.GatewayView) {
	fmt.Fprintln(w, "GATEWAY\tROLE\tSTREAM\tTYPE\tSTATE\tWANTED\tACKED\tNACK REASON")
	for _, g := range gateways {
		for _, t := range g.Types {
			reason := "-"
			if t.State == agent.Nacked && t.LastNack != nil {
				reason = t.LastNack.Reason
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.NodeID, g.Role, g.Stream, shortType(t.TypeURL), t.State,
				shortVersion(t.WantedVersion), shortVersion(t.AckedVersion), reason)
		}
	}
}

// shortVersion keeps a table narrow: the last 12 characters tell apart
// content hashes and the change counters at the end of delta versions.
func shortVersion(v string) string {
	if len(v) > 12 {
		return v[len(v)-12:]
	}
	return dash(v)
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
			if f.output != "json" && f.output != "yaml" {
				return fmt.Errorf("--output: %q is not json or yaml", f.output)
			}
			var dump map[string]any
			if err := f.get(c.Context(), path, &dump); err != nil {
				return err
			}
			return printDump(c.OutOrStdout(), f.output, dump)
		},
	}
	f.add(config, false)
	config.Flags().StringVarP(&f.output, "output", "o", "yaml", "yaml or json")
	_ = config.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"yaml", "json"}, cobra.ShellCompDirectiveNoFileComp))
	c.AddCommand(config)
	return c
}

func printDump(w io.Writer, output string, dump map[string]any) error {
	if output == "json" {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(dump)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(dump); err != nil {
		return err
	}
	return enc.Close()
}
