// Package systemd_test checks the systemd units of a mesh on VMs: that
// systemd-analyze verify accepts them (with the real meshfed and Envoy at
// the paths they name), that every unit is hardened and restarts, and that
// the gateways' units start Envoy on the bootstrap meshfed bootstrap
// writes, with the base id that bootstrap's header gives.
package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/envoyrun/envoytest"
)

var units = []string{"meshfed.service", "meshfed-egress.service", "meshfed-ingress.service"}

// directives are a unit's Key=Value lines, each key's values in order.
func directives(t *testing.T, file string) map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	out := map[string][]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.Truef(t, ok, "%s: %q is not Key=Value", file, line)
		out[k] = append(out[k], v)
	}
	require.NoError(t, s.Err())
	return out
}

func buildMeshfed(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshfed")
	build := exec.Command("go", "build", "-o", bin, "./cmd/meshfed")
	build.Dir = filepath.Join("..", "..")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/meshfed:\n%s", out)
	return bin
}

func TestUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("NO systemd-analyze on this machine: the units are verified where it is")
	}
	meshfed, envoy := buildMeshfed(t), envoytest.Binary(t)
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		raw, err := os.ReadFile(u)
		require.NoError(t, err)
		// The binaries where this machine has them; verify checks that
		// each command is executable.
		s := strings.NewReplacer("/usr/local/bin/meshfed", meshfed, "/usr/local/bin/envoy", envoy).Replace(string(raw))
		p := filepath.Join(dir, u)
		require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	require.NoError(t, err, "systemd-analyze verify:\n%s", out)
	// A misspelt directive is only a warning to verify, and ignored by
	// systemd: a hardening option would silently be off.
	require.Empty(t, string(out), "systemd-analyze verify")
}

func TestUnitsAreHardened(t *testing.T) {
	for _, u := range units {
		t.Run(u, func(t *testing.T) {
			d := directives(t, u)
			for k, want := range map[string]string{
				"User": "meshfed", "Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
				"ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
				"ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
				"RestrictSUIDSGID": "yes", "LockPersonality": "yes", "SystemCallArchitectures": "native",
			} {
				require.Equal(t, []string{want}, d[k], "%s", k)
			}
			require.Contains(t, d["SystemCallFilter"], "@system-service")
			caps := d["CapabilityBoundingSet"]
			require.Len(t, caps, 1)
			require.Contains(t, []string{"", "CAP_NET_BIND_SERVICE"}, caps[0], "no capability but binding low ports")
		})
	}
}

// TestGatewayUnitsRunTheirBootstrap: each gateway's unit writes its
// bootstrap with meshfed bootstrap from the agent's configuration, and
// starts Envoy on that file with the base id its header gives; the agent's
// socket is in the agent unit's runtime folder.
func TestGatewayUnitsRunTheirBootstrap(t *testing.T) {
	meshfed := buildMeshfed(t)
	cfg, err := config.Load("meshfed.yaml")
	require.NoError(t, err)
	agent := directives(t, "meshfed.service")
	require.Equal(t, []string{"/usr/local/bin/meshfed run --config /etc/meshfed/meshfed.yaml"}, agent["ExecStart"])
	require.Equal(t, "unix:///run/"+agent["RuntimeDirectory"][0]+"/xds.sock", cfg.XDS.Listen, "xds.listen is in the agent's RuntimeDirectory")
	require.Equal(t, []string{"yes"}, agent["RuntimeDirectoryPreserve"], "the socket's folder outlives an agent restart")

	baseIDs := map[string]bool{}
	for _, role := range []string{"egress", "ingress"} {
		t.Run(role, func(t *testing.T) {
			d := directives(t, "meshfed-"+role+".service")
			bootstrap := "/run/" + d["RuntimeDirectory"][0] + "/envoy.yaml"
			require.Equal(t, []string{"/usr/local/bin/meshfed bootstrap " + role + " --config /etc/meshfed/meshfed.yaml --output " + bootstrap}, d["ExecStartPre"])

			out, err := exec.Command(meshfed, "bootstrap", role, "--config", "meshfed.yaml").CombinedOutput()
			require.NoError(t, err, "%s", out)
			m := regexp.MustCompile(`(?m)^#   envoy --config-path FILE (--base-id \d+ --drain-time-s 5)$`).FindSubmatch(out)
			require.NotNil(t, m, "the bootstrap's header gives the command line")
			require.Equal(t, []string{"/usr/local/bin/envoy --config-path " + bootstrap + " " + string(m[1]) + " --log-level info"}, d["ExecStart"])
			require.False(t, baseIDs[string(m[1])], "each Envoy on the host has a base id of its own")
			baseIDs[string(m[1])] = true
			require.Contains(t, d["After"][0], "meshfed.service")
		})
	}
}
