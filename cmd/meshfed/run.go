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
	"github.com/meshfed/meshfed/config"
)

func runCmd() *cobra.Command {
	var path string
	var debug bool
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the agent",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			zc := zap.NewProductionConfig()
			if debug {
				zc.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
			}
			log, err := zc.Build()
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			log = log.With(zap.String("mesh", cfg.TrustDomain))
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			a, err := agent.New(ctx, cfg, log, reg)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	c.Flags().StringVar(&path, "config", "meshfed.yaml", "configuration file")
	c.Flags().BoolVar(&debug, "debug", false, "log at debug level")
	return c
}
