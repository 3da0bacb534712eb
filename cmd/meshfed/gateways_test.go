package main

import (
	"context"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/xds"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// connectGateway runs a simulated gateway of node id node against a's xDS
// server until the test ends.
func connectGateway(t *testing.T, a *agent.Agent, node string) {
	t.Helper()
	conn, err := grpc.NewClient(xds.Target(a.XDSAddr()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	updates := make(chan adsclient.Update, 100)
	go func() {
		defer close(done)
		_ = adsclient.New(adsclient.Options{NodeID: node, Delta: true}).Run(ctx, conn, updates)
	}()
	go func() {
		for range updates {
		}
	}()
	t.Cleanup(func() { cancel(); <-done; close(updates); _ = conn.Close() })
}

func TestGatewaysAndGatewayConfig(t *testing.T) {
	a, _ := startAgent(t)
	url := "http://" + a.AdminAddr().String()
	connectGateway(t, a, "ingress-gateway")

	var out string
	require.Eventually(t, func() bool {
		var err error
		out, err = run(t, "gateways", "--agent", url)
		require.NoError(t, err)
		return regexpMatches(`ingress-gateway +ingress +delta +Listener +SYNCED +\S+ +\S+ +-\n`, out)
	}, 20*time.Second, 20*time.Millisecond, "%s", out)
	require.Regexp(t, `^GATEWAY +ROLE +STREAM +TYPE +STATE +WANTED +ACKED +NACK REASON\n`, out)

	out, err := run(t, "gateway", "config", "ingress-gateway", "listeners", "--agent", url, "-o", "json")
	require.NoError(t, err)
	var dump struct {
		Configs []struct {
			Type             string `json:"@type"`
			DynamicListeners []struct {
				Name string `json:"name"`
			} `json:"dynamic_listeners"`
		} `json:"configs"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &dump))
	require.Len(t, dump.Configs, 1)
	require.Equal(t, "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", dump.Configs[0].Type)
	var names []string
	for _, l := range dump.Configs[0].DynamicListeners {
		names = append(names, l.Name)
	}
	require.Equal(t, []string{"ingress/router", "ingress/tls"}, names)

	// YAML by default; over plaintext xDS the gateway gets no private key,
	// and its dump shows none.
	out, err = run(t, "gateway", "config", "ingress-gateway", "secrets", "--agent", url)
	require.NoError(t, err)
	var generic map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(out), &generic))
	require.NotContains(t, out, "private_key")
	require.Contains(t, out, "dynamic_active_secrets")

	_, err = run(t, "gateway", "config", "ingress-gateway", "clusterz", "--agent", url)
	require.EqualError(t, err, `"clusterz" is not clusters, listeners, scopedRoutes, endpoints or secrets`)
	_, err = run(t, "gateway", "config", "egress-9", "--agent", url)
	require.EqualError(t, err, `the meshfed agent at `+url+` answered GET /api/v1/gateways/egress-9/config_dump with 404 Not Found: no gateway with node id "egress-9" is connected: not found`)
	_, err = run(t, "gateway", "config", "ingress-gateway", "--agent", url, "-o", "table")
	require.EqualError(t, err, `--output: "table" is not yaml or json`)

	out, err = run(t, "__complete", "gateway", "config", "--agent", url, "")
	require.NoError(t, err)
	require.Equal(t, "egress-gateway\ningress-gateway\n:4\n", firstLines(out, 3))
}

func regexpMatches(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
