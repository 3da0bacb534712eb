package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// exitCode is the status a command ends with.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// meshfed status exits with 2 when no gateway serves a role, and says
// which; a gateway of each role that holds what it is served makes it 0.
func TestStatusExitsTwoWithoutGateways(t *testing.T) {
	a, _ := startAgentAlone(t, "", "admin: {listen: 127.0.0.1:0}\n")
	url := "http://" + a.AdminAddr().String()
	out, err := run(t, "status", "--agent", url)
	require.Equal(t, 2, exitCode(t, err))
	require.Contains(t, out, "meshfed status: no egress gateway is connected to the agent's xDS server\n")
	require.Contains(t, out, "meshfed status: no ingress gateway is connected to the agent's xDS server\n")
	require.Contains(t, out, "(no gateway is connected)\n", "the empty table says so")

	connectGateways(t, a)
	out, err = run(t, "status", "--agent", url)
	require.NoError(t, err, "%s", out)
}

// A gateway that NACKs what it is served makes meshfed status exit with 2
// and give the gateway's reason.
func TestStatusExitsTwoOnANack(t *testing.T) {
	a, _ := startAgentAlone(t, "", "admin: {listen: 127.0.0.1:0}\n")
	url := "http://" + a.AdminAddr().String()
	reject := func(typeURL string, _ []*anypb.Any) error {
		if strings.HasSuffix(typeURL, ".Listener") {
			return errors.New("Error adding/updating listener(s) ingress/tls: unknown filter")
		}
		return nil
	}
	connectGateways(t, a, adsclient.Options{NodeID: config.DefaultEgressNodeID, Delta: true},
		adsclient.Options{NodeID: config.DefaultIngressNodeID, Delta: true, Reject: reject})
	out, err := run(t, "status", "--agent", url)
	require.Equal(t, 2, exitCode(t, err))
	require.Regexp(t, `meshfed status: gateway ingress-gateway \(ingress\) rejected Listener version \S+: Error adding/updating listener\(s\) ingress/tls: unknown filter\n`, out)
	require.NotContains(t, out, "no ingress gateway")
}

// Every command reads ./meshfed.yaml by default, as meshfed run does, and
// finds the agent's admin address there.
func TestCommandsReadTheConfigurationHereByDefault(t *testing.T) {
	a, dir := startAgent(t)
	b, err := os.ReadFile(filepath.Join(dir, "meshfed.yaml"))
	require.NoError(t, err)
	y := strings.Replace(string(b), "admin: {listen: 127.0.0.1:0}", "admin: {listen: \""+a.AdminAddr().String()+"\"}", 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meshfed.yaml"), []byte(y), 0o600))
	t.Chdir(dir)
	out, err := run(t, "status")
	require.NoError(t, err)
	require.Contains(t, out, "mesh mesh-a.example (ready)")
	out, err = run(t, "catalog", "exports", "-o", "json")
	require.NoError(t, err)
	require.Contains(t, out, `"fqdn": "inventory.mesh-a.example"`)
}

// check and version write JSON for scripts; check's exit status is the
// same either way.
func TestCheckAndVersionWriteJSON(t *testing.T) {
	_, dir := startAgent(t)
	out, err := run(t, "check", "--config", filepath.Join(dir, "meshfed.yaml"), "-o", "json")
	var res CheckResult
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Equal(t, filepath.Join(dir, "meshfed.yaml"), res.Config)
	require.Equal(t, exitCode(t, err), map[bool]int{true: 0, false: 2}[res.Warnings == 0])
	require.Zero(t, res.Errors)

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("trustDomain: mesh-a.example\nxds: {holdof: 1s}\n"), 0o600))
	out, err = run(t, "check", "--config", bad, "-o", "json")
	require.Equal(t, 1, exitCode(t, err))
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Equal(t, 1, res.Errors)
	require.Equal(t, FindingView{Severity: "error", File: bad, Line: 2, Field: "xds.holdof", Message: "unknown field; did you mean holdoff?"}, res.Findings[0])

	out, err = run(t, "version", "-o", "json")
	require.NoError(t, err)
	var v VersionInfo
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	require.NotEmpty(t, v.Version)
	require.NotEmpty(t, v.Revision)
	_, err = run(t, "version", "-o", "yaml")
	require.EqualError(t, err, `--output: "yaml" is not text or json`)
}

// YAML keeps integers integers, as Envoy prints them, where a trip
// through float64 wrote 4.294967295e+09.
func TestYAMLKeepsIntegers(t *testing.T) {
	a, _ := startAgent(t)
	url := "http://" + a.AdminAddr().String()
	out, err := run(t, "gateway", "config", "ingress-gateway", "clusters", "--agent", url)
	require.NoError(t, err)
	require.Contains(t, out, "max_connections: 4294967295\n")
	require.NotContains(t, out, "e+09")

	var b strings.Builder
	require.NoError(t, printAs(&b, "yaml", map[string]any{"big": uint32(4294967295), "at": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, nil))
	require.Equal(t, "at: \"2026-01-02T03:04:05Z\"\nbig: 4294967295\n", b.String())
}

// A table with nothing to show says so.
func TestEmptyTablesSaySo(t *testing.T) {
	var b strings.Builder
	require.NoError(t, printAs(&b, "table", nil, func(w *tabwriter.Writer) { gatewaysTable(w, nil) }))
	require.Equal(t, "GATEWAY  ROLE  STREAM  TYPE  STATE  WANTED  ACKED  NACK REASON\n(no gateway is connected)\n", b.String())
	b.Reset()
	require.NoError(t, printAs(&b, "table", nil, func(w *tabwriter.Writer) { importsTable(w, []agent.ImportView{}, nil) }))
	require.Contains(t, b.String(), "(nothing imported)\n")
}
