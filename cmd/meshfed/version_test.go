package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestVersionAndBuildInfo(t *testing.T) {
	ver, rev := buildInfo()
	require.NotEmpty(t, ver)
	require.NotEmpty(t, rev)
	var out bytes.Buffer
	require.Equal(t, 0, execute([]string{"version"}, &out, &out))
	require.Equal(t, fmt.Sprintf("meshfed %s (revision %s)\n", ver, rev), out.String())

	want := fmt.Sprintf(`# HELP meshfed_build_info The build of this agent: module version and VCS revision; always 1.
# TYPE meshfed_build_info gauge
meshfed_build_info{revision=%q,version=%q} 1
`, rev, ver)
	require.NoError(t, testutil.CollectAndCompare(buildInfoMetric(), strings.NewReader(want)))

	// -ldflags "-X main.version=..." wins over what the toolchain recorded.
	version, revision = "v9.9.9", "0123abc"
	t.Cleanup(func() { version, revision = "", "" })
	ver, rev = buildInfo()
	require.Equal(t, "v9.9.9", ver)
	require.Equal(t, "0123abc", rev)
}
