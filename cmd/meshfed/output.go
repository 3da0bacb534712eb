package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	sigsyaml "sigs.k8s.io/yaml"
)

// addOutput adds -o/--output with the formats given, the first the
// default.
func addOutput(c *cobra.Command, output *string, formats ...string) {
	c.Flags().StringVarP(output, "output", "o", formats[0], strings.Join(formats, ", "))
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

// printAs writes v as JSON or YAML, or calls table.
func printAs(w io.Writer, output string, v any, table func(*tabwriter.Writer)) error {
	switch output {
	case "json":
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(v)
	case "yaml":
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return writeYAML(w, b)
	case "table", "":
		if table == nil {
			return fmt.Errorf("--output: %q is not json or yaml", output)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
	return fmt.Errorf("--output: %q is not table, json or yaml", output)
}

// writeYAML writes a JSON document as YAML, with the API's field names.
// sigs.k8s.io/yaml keeps an integer an integer (4294967295, not the
// 4.294967295e+09 a trip through float64 gives), as Envoy prints it.
func writeYAML(w io.Writer, jsonDoc []byte) error {
	y, err := sigsyaml.JSONToYAML(jsonDoc)
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

// checkOutput refuses an -o a command does not write, before it asks
// anyone anything.
func checkOutput(output string, formats ...string) error {
	if slices.Contains(formats, output) {
		return nil
	}
	return fmt.Errorf("--output: %q is not %s", output, orList(formats))
}

// orList is "a", "a or b", "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// none is the line an empty table has, so that nobody takes a missing
// answer for an empty one.
func none(w io.Writer, what string) {
	fmt.Fprintf(w, "(%s)\n", what)
}
