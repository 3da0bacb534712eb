package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/preflight"
)

func runCmd() *cobra.Command {
	var path string
	var logs logFlags
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the agent",
		Long: `Run the agent. It first checks what meshfed check checks (but the store,
which it opens itself) and refuses to start on an error, naming the file,
line and field; warnings are logged. SIGHUP reloads the configuration, as
meshfed reload does; SIGINT and SIGTERM stop the agent.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, level, err := logs.logger(c.ErrOrStderr())
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			report := preflight.Check(path, preflight.Options{SkipStore: true})
			if err := report.Err(); err != nil {
				return err
			}
			cfg := report.Config
			log = log.With(zap.String("mesh", cfg.TrustDomain))
			for _, f := range report.Warnings() {
				if f.Expiry {
					continue // the agent warns of these itself, and again hourly
				}
				log.Warn("configuration: "+f.Msg, zap.String("file", f.File), zap.Int("line", f.Line), zap.String("field", f.Field))
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoMetric())
			a, err := agent.New(ctx, cfg, log, reg)
			if err != nil {
				return err
			}
			reg.MustRegister(agentCollector{a})
			a.LogLevel = &level
			a.ConfigPath = path
			reloadOnHangup(ctx, a)
			return a.Run(ctx)
		},
	}
	c.Flags().StringVar(&path, "config", "meshfed.yaml", "configuration file")
	logs.add(c)
	return c
}

// reloadOnHangup reloads the configuration on each SIGHUP until ctx ends;
// the agent logs what it applied, what needs a restart, or why it refused
// the file.
func reloadOnHangup(ctx context.Context, a *agent.Agent) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_, _ = a.Reload(ctx)
			}
		}
	}()
}

func reloadCmd() *cobra.Command {
	var f agentFlags
	var dryRun bool
	c := &cobra.Command{
		Use:   "reload",
		Short: "Make the running agent re-read its configuration file (as SIGHUP does)",
		Long: `Make the running agent re-read its configuration file, as SIGHUP does.
What can change while it runs is applied: where the exports come from
(exports, consul.export). Every other field that changed is listed as
needing a restart. A file that does not pass meshfed check changes
nothing: the agent keeps its configuration and says why (exit status 1).
The admin API answers reloads from loopback only. With --dry-run, the
agent says what the reload would change and applies nothing, as
meshfed plan does for its own configuration file (exit status 2 when
something would change).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if dryRun {
				if err := checkOutput(f.output, "table", "json", "yaml"); err != nil {
					return err
				}
				return plan(c.Context(), c.OutOrStdout(), &f, admin.PlanRequest{})
			}
			cl, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context(), 30*time.Second)
			defer cancel()
			var res agent.ReloadResult
			if err := cl.Post(ctx, "/api/v1/reload", &res); err != nil {
				return err
			}
			return f.print(c.OutOrStdout(), res, func(w *tabwriter.Writer) {
				if len(res.Applied)+len(res.NeedsRestart) == 0 {
					fmt.Fprintln(w, "reloaded: nothing changed")
					return
				}
				fmt.Fprintln(w, "FIELD\tCHANGE")
				for _, f := range res.Applied {
					fmt.Fprintf(w, "%s\tapplied\n", f)
				}
				for _, f := range res.NeedsRestart {
					fmt.Fprintf(w, "%s\tneeds a restart\n", f)
				}
			})
		},
	}
	f.add(c, true)
	c.Flags().BoolVar(&dryRun, "dry-run", false, "say what the reload would change, and apply nothing")
	return c
}
