package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/registry/file"
)

func configCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	c.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check a configuration file without starting anything",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				return err
			}
			if path := cfg.Exports.File; path != "" {
				b, err := os.ReadFile(path)
				if err != nil {
					return fmt.Errorf("exports.file: %w", err)
				}
				if _, err := file.Parse(b, path); err != nil {
					return fmt.Errorf("exports.file: %w", err)
				}
			}
			fmt.Fprintln(c.OutOrStdout(), args[0]+": valid")
			return nil
		},
	})
	return c
}
