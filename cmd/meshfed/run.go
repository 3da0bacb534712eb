package main

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

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
line and field; warnings are logged.`,
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
			a.LogLevel = &level
			return a.Run(ctx)
		},
	}
	c.Flags().StringVar(&path, "config", "meshfed.yaml", "configuration file")
	logs.add(c)
	return c
}
