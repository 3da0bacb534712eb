// Package monitoring_test checks the alerting rules and the Grafana
// dashboard of this folder: promtool checks the rules and runs their unit
// tests, every alert has one, and every metric the rules and the dashboard
// read is on the /metrics of running agents (two federated meshes whose
// gateways ACK and NACK).
package monitoring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/examples/twomesh"
	"github.com/meshfed/meshfed/xds/adsclient"
)

const (
	rulesFile     = "meshfed-alerts.yaml"
	rulesTestFile = "meshfed-alerts.test.yaml"
	dashboardFile = "meshfed-dashboard.json"
)

// EnvRequirePromtool=1 (CI) turns a missing promtool from a skip into a
// failure.
const EnvRequirePromtool = "MESHFED_REQUIRE_PROMTOOL"

// promtool finds promtool on PATH, else where scripts/install-promtool.sh
// puts it under the module root (make test does).
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	p := filepath.Join("..", "..", "tools", "promtool", "usr", "bin", "promtool")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	msg := "NO PROMTOOL: the alerting rules are checked and unit-tested by promtool; run scripts/install-promtool.sh tools/promtool (make test does) or put promtool on PATH"
	if os.Getenv(EnvRequirePromtool) == "1" {
		t.Fatal(msg + " (" + EnvRequirePromtool + "=1)")
	}
	t.Skip(msg)
	return ""
}

func TestRulesPassPromtool(t *testing.T) {
	bin := promtool(t)
	out, err := exec.Command(bin, "check", "rules", rulesFile).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	require.Contains(t, string(out), "SUCCESS: 10 rules found")
	out, err = exec.Command(bin, "test", "rules", rulesTestFile).CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
	require.Contains(t, string(out), "SUCCESS")
}

type rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) rules {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var r rules
	require.NoError(t, yaml.Unmarshal(raw, &r))
	return r
}

// TestEveryAlertIsUnitTested: each alert has a promtool test in which it
// fires, so that a rule nobody has seen fire cannot ship.
func TestEveryAlertIsUnitTested(t *testing.T) {
	var alerts []string
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
		}
	}
	raw, err := os.ReadFile(rulesTestFile)
	require.NoError(t, err)
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &tests))
	require.Equal(t, []string{rulesFile}, tests.RuleFiles)
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		require.Truef(t, fired[a], "alert %s fires in no test of %s", a, rulesTestFile)
	}
}

// metricName finds the metrics an expression reads: meshfed's own, and
// the Go and process collectors'. PromQL functions and label names are
// never spelled so.
var metricName = regexp.MustCompile(`\b(?:meshfed|go|process)_[a-zA-Z0-9_]+\b`)

// prometheusOwn are series Prometheus makes itself, on no /metrics.
var prometheusOwn = regexp.MustCompile(`\bup\{job="meshfed"\}`)

// usedMetrics are the metric names the rules and the dashboard read, by
// where they are read.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(where, expr string) {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			require.Truef(t, prometheusOwn.MatchString(expr), "%s: %q reads no metric of meshfed's", where, expr)
		}
		for _, n := range names {
			used[n] = append(used[n], where)
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			add("alert "+r.Alert, r.Expr)
		}
	}
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &d))
	panels := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		panels++
		require.NotEmptyf(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			add("panel "+p.Title, tg.Expr)
		}
	}
	require.Greater(t, panels, 10)
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			add("variable "+v.Name, v.Definition)
		}
	}
	for n, where := range used {
		used[n] = slices.Compact(where)
	}
	return used
}

// scrapedNames are the sample names on a /metrics page (histograms' with
// their _bucket, _sum and _count, as PromQL reads them).
func scrapedNames(body string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			out[line[:i]] = true
		}
	}
	return out
}

// agentIP is a loopback address of this test's own for its agents (every
// 127.x.y.z is loopback on Linux, and 127.192.0.0/10 is no other test's):
// a port picked free on 127.0.0.1 was taken by another package's test
// before the agent bound it, once in five runs of make test.
var agentIP = fmt.Sprintf("127.%d.%d.%d", 192+rand.N(64), rand.N(256), 1+rand.N(254))

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(agentIP, "0"))
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func addr(t *testing.T) string { return net.JoinHostPort(agentIP, strconv.Itoa(freePort(t))) }

func buildMeshfed(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshfed")
	build := exec.Command("go", "build", "-o", bin, "./cmd/meshfed")
	build.Dir = filepath.Join("..", "..")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/meshfed:\n%s", out)
	return bin
}

// TestMetricsExistOnRunningAgents runs two federated meshes (the agents
// as `meshfed run` processes, a Consul sink that cannot be reached, a
// gateway that ACKs and one that NACKs its listeners) and checks that every
// metric the rules and the dashboard read is on their /metrics.
func TestMetricsExistOnRunningAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meshfed")
	}
	used := usedMetrics(t)
	bin := buildMeshfed(t)
	root := t.TempDir()
	a := &twomesh.Mesh{Name: "mesh-a", Service: "inventory", Dir: filepath.Join(root, "mesh-a"), IP: agentIP, PortsFrom: 21000, PortsTo: 21099}
	b := &twomesh.Mesh{Name: "mesh-b", Service: "payments", Dir: filepath.Join(root, "mesh-b"), IP: agentIP, PortsFrom: 22000, PortsTo: 22099}
	a.Peer, b.Peer = b, a
	for _, m := range []*twomesh.Mesh{a, b} {
		m.Federation, m.XDS, m.Admin, m.DNS = addr(t), addr(t), addr(t), addr(t)
		m.IngressPort = uint32(freePort(t))
		m.Upstreams.HTTP, m.Upstreams.GRPC, m.Upstreams.TCP = 1, 2, 3
		require.NoError(t, twomesh.WriteCA(root, m.Name))
		require.NoError(t, m.WriteServices(true))
		require.NoError(t, m.WriteConfig())
	}
	// meshfed_registry_sink_up exists for a configured sink, reachable or
	// not.
	f, err := os.OpenFile(a.ConfigPath(), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fmt.Fprintf(f, "consul:\n  address: %s\n  import: {}\n", addr(t))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, m := range []*twomesh.Mesh{a, b} {
		cmd := exec.CommandContext(ctx, bin, "run", "--config", m.ConfigPath(), "--log-level", "warn")
		log, err := os.Create(filepath.Join(m.Dir, "agent.log"))
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = log, log
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			cancel()
			_ = cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(log.Name())
				t.Logf("%s agent log:\n%s", m.Name, b)
			}
		})
	}

	// The gateways of mesh-a: the egress ACKs everything, the ingress
	// NACKs its listeners.
	for _, g := range []adsclient.Options{
		{NodeID: "egress-gateway", Delta: true},
		{NodeID: "ingress-gateway", Delta: true, Reject: func(typeURL string, _ []*anypb.Any) error {
			if typeURL == resource.ListenerType {
				return fmt.Errorf("this test's gateway refuses listeners")
			}
			return nil
		}},
	} {
		conn, err := grpc.NewClient(a.XDS, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		c := adsclient.New(g)
		go func() {
			for ctx.Err() == nil {
				_ = c.Run(ctx, conn, nil)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond): // the agent is still starting
				}
			}
		}()
	}

	// Until every metric is there; what is missing at the deadline fails.
	var missing []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		scraped := map[string]bool{}
		pageA := scrape(a.Admin)
		for _, page := range []string{pageA, scrape(b.Admin)} {
			for n := range scrapedNames(page) {
				scraped[n] = true
			}
		}
		missing = missing[:0]
		for n, where := range used {
			if !scraped[n] {
				missing = append(missing, fmt.Sprintf("%s (%s)", n, strings.Join(where, ", ")))
			}
		}
		// What the alerts on readiness and gateway states rely on: the
		// samples say what /readyz and meshfed gateways say.
		for _, sample := range []string{
			"meshfed_ready 1",
			`meshfed_gateway_streams{node="ingress-gateway",role="ingress",state="NACKED",type="envoy.config.listener.v3.Listener"} 1`,
			`meshfed_gateway_streams{node="egress-gateway",role="egress",state="SYNCED",type="envoy.config.listener.v3.Listener"} 1`,
			`meshfed_gateway_streams{node="egress-gateway",role="egress",state="NACKED",type="envoy.config.listener.v3.Listener"} 0`,
		} {
			if !strings.Contains(pageA, "\n"+sample+"\n") {
				missing = append(missing, "the sample "+sample+" on mesh-a's agent")
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Strings(missing)
	require.Empty(t, missing, "metrics the rules or the dashboard read that the agents do not serve")
}

func scrape(admin string) string {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
