// Command meshfed is the meshfed agent and its tools.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the command line and returns the exit code: 0, 1 for an
// error (printed once, here), or what an *exitError says.
func execute(args []string, stdout, stderr io.Writer) int {
	c := root()
	c.SetArgs(args)
	c.SetOut(stdout)
	c.SetErr(stderr)
	err := c.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Every line of a multi-line error (one finding a line) says where
	// it comes from.
	fmt.Fprintln(stderr, "meshfed: "+strings.ReplaceAll(err.Error(), "\n", "\nmeshfed: "))
	return 1
}

// exitError ends a command with code, having said all it had to say.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func root() *cobra.Command {
	c := &cobra.Command{
		Use:           "meshfed",
		Short:         "Federate service meshes over Hamlet, and serve their Envoy gateways",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	c.AddCommand(runCmd(), checkCmd(), storeCmd(), statusCmd(), gatewaysCmd(), gatewayCmd(), reloadCmd(), catalogCmd(), certsCmd(), configCmd(), bootstrapCmd(), versionCmd())
	c.AddCommand(registryCmd())
	return c
}
