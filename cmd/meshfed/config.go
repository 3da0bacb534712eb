package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/config"
)

func configCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	c.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Check a configuration file without starting anything",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := config.Load(args[0]); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), args[0]+": valid")
			return nil
		},
	})
	return c
}
