package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/preflight"
)

const checkLong = `Check a configuration and everything it names, without starting anything:
the file itself (unknown fields, with the closest known name; wrong types),
certificates and keys (they load, each key matches its certificate, the
SPIFFE ID is this mesh's and the role's, expiry), trust bundles, listen
addresses (allowed, and one port each), consumers that are not peers, a
loopback ingress that peers refuse, the registry file and the store.

Each finding is printed as FILE:LINE: error|warning: FIELD: MESSAGE.
Exit status: 0 when all is well, 1 when there are errors (meshfed run would
refuse to start), 2 when there are warnings only.`

func checkCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "check",
		Short: "Check a configuration and the files it names without starting anything",
		Long:  checkLong,
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return check(c.OutOrStdout(), path)
		},
	}
	c.Flags().StringVar(&path, "config", "meshfed.yaml", "configuration file")
	return c
}

// check prints every finding, then a summary, and sets the exit status.
func check(w io.Writer, path string) error {
	r := preflight.Check(path, preflight.Options{})
	for _, f := range r.Findings {
		fmt.Fprintln(w, f)
	}
	errs, warnings := len(r.Errors()), len(r.Warnings())
	switch {
	case errs > 0:
		fmt.Fprintf(w, "%s: %s, %s\n", path, plural(errs, "error"), plural(warnings, "warning"))
		return &exitError{code: 1}
	case warnings > 0:
		fmt.Fprintf(w, "%s: %s\n", path, plural(warnings, "warning"))
		return &exitError{code: 2}
	}
	fmt.Fprintf(w, "%s: ok\n", path)
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func configCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	c.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "The same as meshfed check --config FILE",
		Long:  checkLong,
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return check(c.OutOrStdout(), args[0])
		},
	}, &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the configuration, for editors",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := c.OutOrStdout().Write(config.SchemaJSON)
			return err
		},
	})
	return c
}
