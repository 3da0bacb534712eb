package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/agent"
)

const planLong = `Ask the running agent what applying a configuration (--config, by default
./meshfed.yaml) and its registry file (--registry, instead of the one the
configuration names) would change, applying nothing: the peers added,
removed or changed; the exports each peer would gain and lose; per gateway
role, the resources its gateways would be sent (added, changed, removed,
by type and name); the fields a reload applies and those that need a
restart. The agent reads and checks the files itself, as a reload does:
they must lie in the folder of its configuration file (or of its registry
file). meshfed reload --dry-run plans the agent's own configuration file.

Exit status: 0 when nothing would change, 2 when something would, 1 on
an error (a file that does not pass meshfed check, an agent out of reach).`

func planCmd() *cobra.Command {
	var f agentFlags
	var registry string
	c := &cobra.Command{
		Use:   "plan",
		Short: "Show what applying a configuration and registry file would change, applying nothing",
		Long:  planLong,
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(f.output, "table", "json", "yaml"); err != nil {
				return err
			}
			var req admin.PlanRequest
			var err error
			if path := f.configPath(); path != "" {
				if req.Config, err = filepath.Abs(path); err != nil {
					return err
				}
			}
			if registry != "" {
				if req.Registry, err = filepath.Abs(registry); err != nil {
					return err
				}
			}
			return plan(c.Context(), c.OutOrStdout(), &f, req)
		},
	}
	f.add(c, true)
	c.Flags().StringVar(&registry, "registry", "", "a registry file to plan instead of the one the configuration names (exports.file)")
	return c
}

// plan asks the agent for the plan of req, prints it and sets the exit
// status: 2 when something would change.
func plan(ctx context.Context, w io.Writer, f *agentFlags, req admin.PlanRequest) error {
	cl, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var p agent.Plan
	if err := cl.PostJSON(ctx, "/api/v1/plan", req, &p); err != nil {
		return err
	}
	if err := f.print(w, p, func(tw *tabwriter.Writer) { planTable(tw, p) }); err != nil {
		return err
	}
	if p.Changes {
		return &exitError{code: 2}
	}
	return nil
}

func planTable(w *tabwriter.Writer, p agent.Plan) {
	fmt.Fprintf(w, "plan of %s", p.Config)
	if p.Registry != "" {
		fmt.Fprintf(w, " with the registry file %s", p.Registry)
	}
	fmt.Fprintln(w)
	if !p.Changes {
		fmt.Fprintln(w, "nothing would change")
		return
	}
	if n := len(p.Peers.Added) + len(p.Peers.Removed) + len(p.Peers.Changed); n > 0 {
		fmt.Fprintln(w, "\nPEER\tCHANGE")
		for _, name := range p.Peers.Added {
			fmt.Fprintf(w, "%s\tadded\n", name)
		}
		for _, name := range p.Peers.Removed {
			fmt.Fprintf(w, "%s\tremoved\n", name)
		}
		for _, c := range p.Peers.Changed {
			fmt.Fprintf(w, "%s\tchanged: %s\n", c.Name, strings.Join(c.Fields, ", "))
		}
	}
	if len(p.Exports) > 0 {
		fmt.Fprintln(w, "\nPEER\tEXPORTS GAINED\tEXPORTS LOST")
		for _, e := range p.Exports {
			fmt.Fprintf(w, "%s\t%s\t%s\n", e.Peer, dash(strings.Join(e.Gained, ",")), dash(strings.Join(e.Lost, ",")))
		}
	}
	fmt.Fprintln(w, "\nGATEWAY\tADDED\tCHANGED\tREMOVED")
	for _, g := range p.Gateways {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", g.Role, g.Added, g.Changed, g.Removed)
	}
	for _, g := range p.Gateways {
		if len(g.Resources) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s RESOURCE\tTYPE\tCHANGE\n", strings.ToUpper(string(g.Role)))
		for _, r := range g.Resources {
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.Name, r.Type, r.Change)
		}
	}
	if len(p.Applied)+len(p.NeedsRestart) > 0 {
		fmt.Fprintln(w, "\nFIELD\tCHANGE")
		for _, f := range p.Applied {
			fmt.Fprintf(w, "%s\tapplied by a reload\n", f)
		}
		for _, f := range p.NeedsRestart {
			fmt.Fprintf(w, "%s\tneeds a restart\n", f)
		}
	}
	if len(p.Rejected) > 0 {
		fmt.Fprintln(w, "\nREJECTED\tPEER\tERROR")
		for _, r := range p.Rejected {
			fmt.Fprintf(w, "%s %s\t%s\t%s\n", r.Kind, r.ID, dash(r.Peer), r.Error)
		}
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "\nnote: %s\n", n)
	}
}
