// Command meshfed is the meshfed agent and its tools.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := root().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "meshfed:", err)
		os.Exit(1)
	}
}

func root() *cobra.Command {
	c := &cobra.Command{
		Use:           "meshfed",
		Short:         "Federate service meshes over Hamlet, and serve their Envoy gateways",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	c.AddCommand(runCmd(), statusCmd(), catalogCmd(), certsCmd(), configCmd(), versionCmd())
	return c
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) {
			fmt.Fprintln(c.OutOrStdout(), "meshfed", version)
		},
	}
}
