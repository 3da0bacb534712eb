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
	var path, output string
	c := &cobra.Command{
		Use:   "check",
		Short: "Check a configuration and the files it names without starting anything",
		Long:  checkLong,
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return check(c.OutOrStdout(), path, output)
		},
	}
	c.Flags().StringVar(&path, "config", defaultConfig, "configuration file")
	addOutput(c, &output, "text", "json")
	return c
}

// CheckResult is what meshfed check -o json writes.
type CheckResult struct {
	Config   string        `json:"config"`
	Errors   int           `json:"errors"`
	Warnings int           `json:"warnings"`
	Findings []FindingView `json:"findings"`
}

// FindingView is one finding, as meshfed check -o json writes it.
type FindingView struct {
	Severity string `json:"severity"`
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
}

// check prints every finding, then a summary, and sets the exit status:
// 1 with errors, 2 with warnings only.
func check(w io.Writer, path, output string) error {
	if err := checkOutput(output, "text", "json"); err != nil {
		return err
	}
	r := preflight.Check(path, preflight.Options{})
	errs, warnings := len(r.Errors()), len(r.Warnings())
	code := 0
	switch {
	case errs > 0:
		code = 1
	case warnings > 0:
		code = 2
	}
	if output == "json" {
		res := CheckResult{Config: path, Errors: errs, Warnings: warnings, Findings: []FindingView{}}
		for _, f := range r.Findings {
			res.Findings = append(res.Findings, FindingView{Severity: string(f.Severity), File: f.File, Line: f.Line, Field: f.Field, Message: f.Msg})
		}
		if err := printAs(w, "json", res, nil); err != nil {
			return err
		}
	} else {
		for _, f := range r.Findings {
			fmt.Fprintln(w, f)
		}
		switch code {
		case 1:
			fmt.Fprintf(w, "%s: %s, %s\n", path, plural(errs, "error"), plural(warnings, "warning"))
		case 2:
			fmt.Fprintf(w, "%s: %s\n", path, plural(warnings, "warning"))
		default:
			fmt.Fprintf(w, "%s: ok\n", path)
		}
	}
	if code != 0 {
		return &exitError{code: code}
	}
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
	var output string
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "The same as meshfed check --config FILE",
		Long:  checkLong,
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return check(c.OutOrStdout(), args[0], output)
		},
	}
	addOutput(validate, &output, "text", "json")
	c.AddCommand(validate, &cobra.Command{
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
