package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// What the shell completion scripts ask: `meshfed __complete ARGS...`.
func TestCompletionOfFlagValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "-o", ""}, "table\njson\nyaml\n:4\n"},
		{[]string{"catalog", "imports", "--output", ""}, "table\njson\nyaml\n:4\n"},
		{[]string{"run", "--log-level", ""}, "debug\ninfo\nwarn\nerror\n:4\n"},
		{[]string{"run", "--log-format", ""}, "json\nconsole\n:4\n"},
	} {
		var out, errOut bytes.Buffer
		require.Equal(t, 0, execute(append([]string{"__complete"}, tc.args...), &out, &errOut))
		require.Equal(t, tc.want, out.String(), "%v", tc.args)
	}
}
