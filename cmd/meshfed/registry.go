package main

import (
	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/registry/file"
)

func registryCmd() *cobra.Command {
	c := &cobra.Command{Use: "registry", Short: "Work with registry files (exports.file)"}
	c.AddCommand(&cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of a registry file, for editors",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := c.OutOrStdout().Write(file.SchemaJSON)
			return err
		},
	})
	return c
}
