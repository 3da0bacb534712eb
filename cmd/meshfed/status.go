package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/internal/untrusted"
)

// agentFlags say which agent a command talks to: its admin address, given
// directly or read from its configuration.
type agentFlags struct {
	url, config, output, tokenFile string
}

// defaultConfig is the configuration every command reads unless told
// otherwise, as meshfed run does.
const defaultConfig = "meshfed.yaml"

func (f *agentFlags) add(c *cobra.Command, output bool) {
	c.Flags().StringVar(&f.url, "agent", "", "the agent's admin URL (default: admin.listen of --config, else http://"+config.DefaultAdminListen+")")
	c.Flags().StringVar(&f.config, "config", "", "the agent's configuration file, to find its admin address and admin.tokenFile (default: "+defaultConfig+", when there is one here)")
	c.Flags().StringVar(&f.tokenFile, "token-file", "", "a file holding the admin API's bearer token, for an agent beyond loopback (default: admin.tokenFile of --config)")
	if output {
		addOutput(c, &f.output, "table", "json", "yaml")
	}
}

// configPath is --config, or ./meshfed.yaml when there is one: the file
// meshfed run reads by default names the agent these commands talk to.
func (f *agentFlags) configPath() string {
	if f.config != "" {
		return f.config
	}
	if _, err := os.Stat(defaultConfig); err == nil {
		return defaultConfig
	}
	return ""
}

func (f *agentFlags) client() (*admin.Client, error) {
	c := &admin.Client{BaseURL: f.url}
	listen, tokenFile := config.DefaultAdminListen, f.tokenFile
	if path := f.configPath(); path != "" {
		a, err := adminOf(path)
		if err != nil {
			return nil, err
		}
		listen = a.Listen
		if tokenFile == "" {
			tokenFile = a.TokenFile
		}
	}
	if tokenFile != "" {
		token, err := admin.ReadToken(tokenFile)
		if err != nil {
			return nil, err
		}
		c.Token = token
	}
	if c.BaseURL == "" {
		u, err := admin.AgentURL(listen)
		if err != nil {
			return nil, err
		}
		c.BaseURL = u
	}
	return c, nil
}

func (f *agentFlags) get(ctx context.Context, path string, out any) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.Get(ctx, path, out)
}

// adminOf is admin.listen and admin.tokenFile of the configuration file
// at path. A file that does not pass the checks but still names them is
// read for them alone: meshfed reload must reach the agent to hear why it
// refuses the file, and status works while the file is edited.
func adminOf(path string) (config.Admin, error) {
	cfg, err := config.Load(path)
	if err == nil {
		return cfg.Admin, nil
	}
	b, rerr := config.ReadFile(path)
	if rerr != nil {
		return config.Admin{}, err
	}
	var partial struct {
		Admin struct {
			Listen    string `yaml:"listen"`
			TokenFile string `yaml:"tokenFile"`
		} `yaml:"admin"`
	}
	// Bounded as the configuration is: this reads a file that failed.
	doc, perr := untrusted.ParseYAML(b)
	if perr != nil || doc.Kind != 0 && doc.Decode(&partial) != nil {
		return config.Admin{}, err
	}
	a := config.Admin{Listen: partial.Admin.Listen, TokenFile: partial.Admin.TokenFile}
	if a.Listen == "" {
		a.Listen = config.DefaultAdminListen
	}
	if a.TokenFile != "" && !filepath.IsAbs(a.TokenFile) {
		a.TokenFile = filepath.Join(filepath.Dir(path), a.TokenFile)
	}
	return a, nil
}

// complete asks the agent (at --agent or --config) for the names a
// positional argument takes; nothing when it cannot be reached.
func complete[T any](f *agentFlags, path string, names func(T) []string) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var v T
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if err := f.get(c.Context(), path, &v); err != nil {
			cobra.CompDebugln(err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names(v), cobra.ShellCompDirectiveNoFileComp
	}
}

// print writes v as JSON or YAML, or calls table.
func (f *agentFlags) print(w io.Writer, v any, table func(*tabwriter.Writer)) error {
	return printAs(w, f.output, v, table)
}

func statusCmd() *cobra.Command {
	var f agentFlags
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the agent's peers, what they answered, and its gateways",
		Long:  statusLong,
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var s agent.Status
			if err := f.get(c.Context(), "/api/v1/status", &s); err != nil {
				return err
			}
			if err := f.print(c.OutOrStdout(), s, func(w *tabwriter.Writer) { statusTable(w, s) }); err != nil {
				return err
			}
			problems := s.Problems()
			for _, p := range problems {
				fmt.Fprintln(c.ErrOrStderr(), "meshfed status: "+p)
			}
			if len(problems) > 0 {
				return &exitError{code: 2}
			}
			return nil
		},
	}
	f.add(c, true)
	return c
}

const statusLong = `Show the agent's peers, what they answered, its gateways, the registries
it publishes the imports in, the source of its exports, its SVIDs and the
trust bundles with their fetch schedules.

Exit status: 0 when all is well; 1 when the agent could not be asked; 2
when the agent answered but something needs a look, each reason on a line
of standard error: the agent is not ready; a peer is failing (in backoff
after a failed stream, refused: retried, or failed: not retried); an SVID
was refused (the last good one stays), the one in use expired or expires
within identity.expiryWarning; a trust bundle failed to load or fetch, or
imports are held on a peer's bundle that has not loaded; a registry cannot
be written to, or the source of the exports cannot be read. A peer that
dials this agent and has not yet connected (waiting) is not failing.`

func statusTable(w *tabwriter.Writer, s agent.Status) {
	ready := "ready"
	if !s.Ready {
		ready = "not ready"
	}
	fmt.Fprintf(w, "mesh %s (%s)\n\n", s.Mesh, ready)
	peersTable(w, s.Peers)
	fmt.Fprintln(w, "\nPEER\tSERVICE\tANSWER\tREASON")
	if !slices.ContainsFunc(s.Peers, func(p agent.PeerStatus) bool { return len(p.Deliveries) > 0 }) {
		none(w, "no peer has answered for an exported service")
	}
	for _, p := range s.Peers {
		for _, d := range p.Deliveries {
			answer := "ACK"
			if !d.Acked {
				answer = "NACK " + d.Code
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, d.Service, answer, dash(d.Message))
		}
	}
	rejectedTable(w, s.Peers)
	refusedTable(w, s)
	fmt.Fprintln(w)
	gatewaysTable(w, s.Gateways)
	regs := s.Sinks
	if s.ExportSource != nil {
		regs = append(regs, *s.ExportSource)
	}
	if len(regs) > 0 {
		fmt.Fprintln(w, "\nREGISTRY\tHEALTHY\tLAST SYNC\tFAILING SINCE\tLAST ERROR")
		for _, k := range regs {
			fmt.Fprintf(w, "%s\t%t\t%s\t%s\t%s\n", k.Name, k.Healthy, ago(k.LastSync), ago(k.FailingSince), dash(k.LastError))
		}
	}
	certsTable(w, s)
}

// certsTable lists the SVIDs in use and the trust bundles with their
// fetch schedules, and the imports held on a bundle that has not loaded.
func certsTable(w *tabwriter.Writer, s agent.Status) {
	fmt.Fprintln(w, "\nROLE\tSPIFFE ID\tSERIAL\tEXPIRES\tREFUSED")
	for _, v := range s.SVIDs {
		expires := "-"
		if !v.NotAfter.IsZero() {
			expires = v.NotAfter.UTC().Format(time.RFC3339)
			if v.Expiring {
				expires += " (soon)"
				if v.NotAfter.Before(time.Now()) {
					expires = v.NotAfter.UTC().Format(time.RFC3339) + " (expired)"
				}
			}
		}
		refused := "-"
		if v.Refused != "" {
			refused = ago(v.RefusedAt) + ": " + v.Refused
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.Role, dash(v.ID), dash(v.Serial), expires, refused)
	}
	fmt.Fprintln(w, "\nTRUST DOMAIN\tSOURCE\tORIGIN\tCAS\tLAST FETCH\tNEXT FETCH\tLAST ERROR")
	for _, b := range s.Bundles {
		lastErr := "-"
		if b.LastError != "" {
			lastErr = ago(b.LastErrorTime) + ": " + b.LastError
			if b.Failures > 1 {
				lastErr = fmt.Sprintf("%s (%d failures in a row)", lastErr, b.Failures)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", b.TrustDomain, dash(b.Source), dash(b.Origin), b.Authorities, ago(b.LastFetch), in(b.NextFetch), lastErr)
	}
	if len(s.Held) > 0 {
		fmt.Fprintln(w, "\nHELD ON BUNDLE\tPEERS\tIMPORTS\tEXPORTS\tSINCE\tWHY")
		for _, h := range s.Held {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", h.TrustDomain, dash(strings.Join(h.Peers, ",")), dash(strings.Join(h.Imports, ",")),
				dash(strings.Join(h.Exports, ",")), ago(h.Since), h.Reason)
		}
	}
}

func peersTable(w *tabwriter.Writer, peers []agent.PeerStatus) {
	fmt.Fprintln(w, "PEER\tTRUST DOMAIN\tSTATE\tSINCE\tIMPORTED\tEXPORTED\tNEGOTIATED\tLAST SENT\tLAST RECEIVED\tLAST ERROR")
	if len(peers) == 0 {
		none(w, "no peer is configured")
	}
	for _, p := range peers {
		negotiated := "-"
		if c := p.Capabilities; c != nil {
			negotiated = c.String()
			if negotiated == "" {
				negotiated = "none (specification)"
			}
		}
		lastErr := "-"
		if p.LastError != "" {
			lastErr = p.LastError
			if p.LastErrorAt != nil {
				lastErr = ago(*p.LastErrorAt) + ": " + lastErr
			}
		}
		state := string(p.State)
		if p.Refusal != nil {
			state += " (" + string(p.Refusal.Kind) + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", p.Name, p.TrustDomain, state, ago(p.Since),
			p.Imported, p.Exported, negotiated, agoPtr(p.LastSent), agoPtr(p.LastReceived), lastErr)
	}
}

// rejectedTable lists the NACKs this agent sent for the peers' services.
func rejectedTable(w *tabwriter.Writer, peers []agent.PeerStatus) {
	fmt.Fprintln(w, "\nPEER\tREJECTED SERVICE\tNACK SENT\tREASON\tAT")
	if !slices.ContainsFunc(peers, func(p agent.PeerStatus) bool { return len(p.Rejected) > 0 }) {
		none(w, "no service of a peer is rejected")
	}
	for _, p := range peers {
		for _, r := range p.Rejected {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Name, r.ResourceID, r.Code, r.Message, ago(r.At))
		}
	}
}

// refusedTable lists the Hamlet connections this agent refused, under the
// peer whose trust domain the client presented, or "?".
func refusedTable(w *tabwriter.Writer, s agent.Status) {
	fmt.Fprintln(w, "\nREFUSED FROM\tREMOTE\tIDENTITY PRESENTED\tREASON\tAT")
	if len(s.Refused) == 0 && !slices.ContainsFunc(s.Peers, func(p agent.PeerStatus) bool { return len(p.Refused) > 0 }) {
		none(w, "no Hamlet connection refused")
	}
	for _, p := range s.Peers {
		for _, r := range p.Refused {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Name, r.Remote, dash(r.Identity), r.Reason, ago(r.At))
		}
	}
	for _, r := range s.Refused {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", "?", r.Remote, dash(r.Identity), r.Reason, ago(r.At))
	}
}

func importsTable(w *tabwriter.Writer, v []agent.ImportView, peers []agent.PeerStatus) {
	fmt.Fprintln(w, "PEER\tSERVICE\tLOCAL NAME\tINSTANCE\tPROTOCOL\tEGRESS\tSTALE SINCE")
	if len(v) == 0 {
		none(w, "nothing imported")
	}
	for _, imp := range v {
		stale := "-"
		if imp.StaleSince != nil {
			stale = imp.StaleSince.Format(time.RFC3339)
		}
		for _, in := range imp.Instances {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s:%d\t%s\n", imp.Peer, imp.Name, imp.LocalFQDN, in.Instance, in.Protocol, in.Address, in.Port, stale)
		}
	}
	rejectedTable(w, peers)
}

// catalogImportsCmd is catalog imports: the imports, and in the table the
// services this agent refused, which only the status knows.
func catalogImportsCmd() *cobra.Command {
	var f agentFlags
	imports := &cobra.Command{
		Use:   "imports [PEER]",
		Short: "Services imported from peers (or from PEER), and where local workloads reach them",
		Args:  cobra.MaximumNArgs(1),
		ValidArgsFunction: complete(&f, "/api/v1/status", func(s agent.Status) (names []string) {
			for _, p := range s.Peers {
				names = append(names, p.Name)
			}
			return names
		}),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(f.output, "table", "json", "yaml"); err != nil {
				return err
			}
			var v []agent.ImportView
			if err := f.get(c.Context(), "/api/v1/imports", &v); err != nil {
				return err
			}
			// The peers say whether a name is one: a peer that publishes
			// nothing yet has no import.
			var s agent.Status
			if err := f.get(c.Context(), "/api/v1/status", &s); err != nil {
				return err
			}
			if len(args) == 1 {
				var names []string
				for _, p := range s.Peers {
					names = append(names, p.Name)
				}
				if !slices.Contains(names, args[0]) {
					return fmt.Errorf("%q is not a peer of this agent (peers: %s)", args[0], dash(strings.Join(names, ", ")))
				}
				v = slices.DeleteFunc(v, func(imp agent.ImportView) bool { return imp.Peer != args[0] })
				s.Peers = slices.DeleteFunc(s.Peers, func(p agent.PeerStatus) bool { return p.Name != args[0] })
			}
			if f.output != "table" {
				return f.print(c.OutOrStdout(), v, nil)
			}
			return f.print(c.OutOrStdout(), v, func(w *tabwriter.Writer) { importsTable(w, v, s.Peers) })
		},
	}
	f.add(imports, true)
	return imports
}

func catalogCmd() *cobra.Command {
	c := &cobra.Command{Use: "catalog", Short: "List imported and exported services"}
	imports := catalogImportsCmd()
	var g agentFlags
	exports := &cobra.Command{
		Use:   "exports [SERVICE]",
		Short: "Local services exported to peers (or SERVICE), and what each consumer answered",
		Args:  cobra.MaximumNArgs(1),
		ValidArgsFunction: complete(&g, "/api/v1/exports", func(v []agent.ExportView) (names []string) {
			for _, e := range v {
				names = append(names, e.Name)
			}
			return names
		}),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(g.output, "table", "json", "yaml"); err != nil {
				return err
			}
			var v []agent.ExportView
			if err := g.get(c.Context(), "/api/v1/exports", &v); err != nil {
				return err
			}
			if len(args) == 1 {
				all := v
				v = slices.DeleteFunc(slices.Clone(v), func(e agent.ExportView) bool { return e.Name != args[0] })
				if len(v) == 0 {
					return fmt.Errorf("%q is not a service this agent exports (%s)", args[0], exportNames(all))
				}
			}
			return g.print(c.OutOrStdout(), v, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "SERVICE\tFQDN\tMODE\tPORTS\tCONSUMER\tANSWER")
				if len(v) == 0 {
					none(w, "nothing exported")
				}
				for _, e := range v {
					var ports []string
					for _, p := range e.Ports {
						ports = append(ports, fmt.Sprintf("%s/%d/%s", p.Name, p.Port, p.Protocol))
					}
					for _, consumer := range e.Consumers {
						answer := "-"
						if d, ok := e.Deliveries[consumer]; ok {
							answer = "ACK"
							if !d.Acked {
								answer = "NACK " + d.Code + ": " + d.Message
							}
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.FQDN, e.Mode, strings.Join(ports, ","), consumer, answer)
					}
				}
			})
		},
	}
	g.add(exports, true)
	c.AddCommand(imports, exports)
	return c
}

func agoPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return ago(*t)
}

// in is how long until t, for a time to come.
func in(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if d := time.Until(t).Round(time.Second); d > 0 {
		return "in " + d.String()
	}
	return "now"
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortType is the last part of a type URL: Cluster, Listener...
func shortType(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

// exportNames lists exported services for a message, the first few.
func exportNames(v []agent.ExportView) string {
	if len(v) == 0 {
		return "it exports none"
	}
	var names []string
	for i, e := range v {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(v)-5))
			break
		}
		names = append(names, e.Name)
	}
	return "exports: " + strings.Join(names, ", ")
}
