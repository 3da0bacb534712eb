package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/store"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// TestMain lets the test binary serve as the harness's child processes.
func TestMain(m *testing.M) {
	if code, ok := Child(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// tiny is a short run of every system, mode and workload. The tests check
// that it completes correctly, never how fast.
func tiny(inProcess bool) Options {
	return Options{
		Services:         []int{50},
		Gateways:         []int{3},
		SingleChanges:    8,
		ChurnRate:        40,
		ChurnDuration:    250 * time.Millisecond,
		BurstFraction:    0.2,
		InProcessClients: inProcess,
		WaitTimeout:      time.Minute,
		Sync:             SyncOptions{Services: []int{20}, NoNetem: true},
		Progress:         testWriter{t: nil},
	}
}

func TestRunEverySystemModeAndWorkload(t *testing.T) {
	opts := tiny(false)
	opts.Progress = testWriter{t}
	rep, err := Run(context.Background(), opts)
	require.NoError(t, err)
	require.Len(t, rep.Runs, len(Systems)*2)
	for _, r := range rep.Runs {
		t.Run(r.System+"/"+r.Mode, func(t *testing.T) {
			require.Empty(t, r.Failed)
			assert.Empty(t, r.Errors)
			assert.Zero(t, r.NACKs)
			assert.True(t, r.Check.OK(), "final state: %v", r.Check.Problems)
			assert.Equal(t, 3, r.Check.Gateways)
			assert.Equal(t, r.System != SystemLinear || r.Mode == ModeDelta, r.Check.VersionsChecked)
			for name, w := range map[string]*Workload{"single": r.Single, "churn": r.Churn, "burst": r.Burst} {
				require.NotNil(t, w, name)
				assert.Positive(t, w.Latency.Count, name)
				assert.Zero(t, w.Latency.TimedOut, name)
			}
			require.NotNil(t, r.Cold)
			require.NotNil(t, r.Storm)
			assert.False(t, r.Storm.TimedOut)
			assert.Positive(t, r.Resources)
		})
	}
	require.NotNil(t, rep.Sync)
	// On loopback, then through the latency proxy, with windows 1 and 64.
	require.Len(t, rep.Sync.Runs, 4)
	var links []string
	var windows []int
	for _, s := range rep.Sync.Runs {
		assert.Empty(t, s.Error)
		assert.False(t, s.Extrapolated)
		assert.Equal(t, 20, s.Services)
		links, windows = append(links, s.Link), append(windows, s.Window)
	}
	assert.Equal(t, []int{1, 64, 1, 64}, windows)
	assert.Equal(t, []string{"loopback", "loopback", "loopback+proxy 50ms RTT", "loopback+proxy 50ms RTT"}, links)

	// The report renders: a table naming every system, and the JSON (the
	// plots are drawn from it by bench/plot, a module of its own).
	var sb strings.Builder
	require.NoError(t, rep.WriteTable(&sb))
	for _, s := range append([]string{"meshfed/snapshot", "meshfed/linear", "final state check"}, Systems...) {
		assert.Contains(t, sb.String(), s)
	}
	dir := t.TempDir()
	files, err := rep.Write(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(dir, "meshfed-bench.json"), filepath.Join(dir, "meshfed-bench.txt")}, files)
}

// TestInProcessGateways runs the gateways in the test's process, the other
// way the harness runs them.
func TestInProcessGateways(t *testing.T) {
	opts := tiny(true)
	opts.Progress = testWriter{t}
	opts.Systems = []string{SystemMeshfed}
	opts.Sync.Skip = true
	rep, err := Run(context.Background(), opts)
	require.NoError(t, err)
	require.Len(t, rep.Runs, 2)
	for _, r := range rep.Runs {
		require.Empty(t, r.Failed)
		assert.Zero(t, r.NACKs)
		assert.True(t, r.Check.OK(), "%s final state: %v", r.Mode, r.Check.Problems)
		assert.True(t, r.HeapIncludesClients)
	}
}

func TestExpectationsOfEachKind(t *testing.T) {
	p, err := newPKI()
	require.NoError(t, err)
	in := p.input()
	st, err := store.Open(filepath.Join(t.TempDir(), "meshfed.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	cat := catalog.New(st, zaptest.NewLogger(t))
	require.NoError(t, cat.SetPeers(catalogPeers()))
	g := newGenerator(7, cat)
	require.NoError(t, load(st, cat, g, 8))
	port := func(string, string, string) (uint32, bool) { return 20000, true }
	held := newHolders(&in, cat.Imports())
	noPort := func(string, string, string) (uint32, bool) { return 0, false }

	for _, tc := range []struct {
		kind  changeKind
		port  portFunc
		scope string
	}{
		{kindEndpoints, port, ""},
		{kindAdd, noPort, ""},
		{kindRemove, port, ""},
		{kindEdit, port, ""},
	} {
		c, err := g.make(tc.kind)
		require.NoError(t, err)
		exps := expectations(&in, c, tc.port, false, held)
		require.NotEmpty(t, exps, tc.kind)
		for _, e := range exps {
			assert.Equal(t, c.id, e.Change)
		}
		if tc.scope != "" {
			assert.Equal(t, tc.scope, scopeOf(exps))
		}
		switch tc.kind {
		case kindEndpoints:
			// The service moves to another ingress gateway of its owner,
			// whose cluster the gateways hold for the services already
			// there: its listener or route names it, and nothing else
			// comes.
			require.Len(t, exps, 1)
			assert.Contains(t, []string{resource.ListenerType, resource.ScopedRouteType}, exps[0].Type)
		case kindRemove:
			for _, e := range exps {
				assert.True(t, e.Absent, "%+v", e)
			}
		case kindAdd:
			for _, e := range exps {
				assert.False(t, e.Absent, "%+v", e)
				// A new service is on its owner's ingress, whose cluster
				// the gateways hold already: nothing comes for it.
				assert.NotEqual(t, resource.ClusterType, e.Type, "%+v", e)
			}
		}
	}
}

func TestOptionsRejectUnknownNames(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Systems: []string{"istio"}}, `unknown system "istio"`},
		{Options{Modes: []string{"rest"}}, `unknown mode "rest"`},
		{Options{Workloads: []string{"flood"}}, `unknown workload "flood"`},
		{Options{Plans: []Plan{{Services: []int{1}}}}, "services: 1; at least 2"},
		{Options{Sync: SyncOptions{Windows: []int{0}}}, "sync window 0: at least 1"},
		{Options{Ingress: []int{0}}, "ingress: 0 exports; at least 1"},
	} {
		_, err := Run(context.Background(), tc.opts)
		assert.ErrorContains(t, err, tc.want)
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if w.t != nil {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// An expectation is met with the older ones of its resource; a moot one
// (an absence a partial state-of-the-world stream cannot show) right away.
func TestExpectationsSupersede(t *testing.T) {
	f := newLocalFleet()
	f.cfg = fleetConfig{Nodes: []string{"gw"}}
	g := &gateway{f: f, pending: map[string][]*pendingKey{}, client: adsclient.New(adsclient.Options{NodeID: "gw", DigestsOnly: true})}
	f.gws = []*gateway{g}
	require.NoError(t, f.expect([]Expect{
		{Change: 1, Type: resource.EndpointType, Name: "a", Digest: 7},
		{Change: 1, Type: resource.ClusterType, Name: "b", Absent: true},
	}))
	require.NoError(t, f.expect([]Expect{{Change: 2, Type: resource.EndpointType, Name: "a", Absent: true, Moot: true}}))
	assert.Equal(t, uint64(2), (<-f.events()).Change, "moot: met when registered")
	select {
	case e := <-f.events():
		t.Fatalf("change %d met before the cluster went", e.Change)
	default:
	}
	g.onUpdate(adsclient.Update{TypeURL: resource.ClusterType, Acked: time.Now()})
	assert.Equal(t, uint64(1), (<-f.events()).Change)
}
