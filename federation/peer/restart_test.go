package peer_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/internal/delayproxy"
)

// The long form of the restart property test, e.g.
//
//	go test ./federation/peer -run TestRestartNeverRemovesWhatTheOwnerExports \
//	    -restart.services 10000 -restart.restarts 4 -timeout 30m -v
var (
	restartServices = flag.Int("restart.services", 0, "services in the restart property test; 0 runs the short sampled cases")
	restartRestarts = flag.Int("restart.restarts", 4, "restarts per case in the long form, alternating owner and consumer")
	restartLatency  = flag.Duration("restart.latency", 10*time.Millisecond, "one-way latency in the long form")
	restartWindow   = flag.Int("restart.window", 64, "window of both sides in the long form (with extensions)")
	restartPlain    = flag.Bool("restart.plain", false, "long form without extensions: specification peers, grace period as quiet time")
	restartSeed     = flag.Uint64("restart.seed", 0, "seed of the sampled cases; 0 picks one")
)

// restartCase is one federation of an owner (mesh-b, exporting services)
// and a consumer (mesh-a), restarted side after side.
type restartCase struct {
	services   int
	latency    time.Duration // one way
	window     int
	extensions bool
	// ownerDials: the owner dials the consumer, else the consumer dials.
	ownerDials bool
	// restarts names the side restarted each time: "owner" or "consumer".
	restarts []string
	grace    time.Duration
}

func (c restartCase) String() string {
	return fmt.Sprintf("services=%d latency=%s window=%d extensions=%t ownerDials=%t restarts=%v grace=%s",
		c.services, c.latency, c.window, c.extensions, c.ownerDials, c.restarts, c.grace)
}

// sampleRestartCases draws the short cases. The grace period is shorter
// than a resync, so that a grace period counted from the stream's start
// would delete. With extensions it is far shorter (it must never run);
// without, it is quiet time, and far longer than any pause between two
// responses of one catalog.
func sampleRestartCases(seed uint64, n int) []restartCase {
	r := rand.New(rand.NewPCG(seed, seed))
	var out []restartCase
	for i := range n {
		c := restartCase{
			extensions: i%2 == 0,
			ownerDials: r.IntN(2) == 0,
			latency:    []time.Duration{0, time.Millisecond, 3 * time.Millisecond}[r.IntN(3)],
			restarts:   []string{"owner", "consumer"},
		}
		if r.IntN(2) == 0 {
			c.restarts = []string{"consumer", "owner"}
		}
		if c.extensions {
			c.services = 100 + r.IntN(400)
			c.window = []int{1, 8, 64}[r.IntN(3)]
			c.grace = 20 * time.Millisecond
		} else {
			// A resync takes longer than the grace period (some 40 to
			// 80 round trips of 16 to 24 ms), while the pause between
			// two responses stays far below it.
			c.services = 40 + r.IntN(40)
			c.latency = 8*time.Millisecond + time.Duration(r.IntN(5))*time.Millisecond
			c.window = 1
			c.grace = 600 * time.Millisecond
		}
		out = append(out, c)
	}
	return out
}

// TestRestartNeverRemovesWhatTheOwnerExports: whatever the catalog size,
// latency and window, with or without extensions, a restart of either
// side never removes an import the owner still exports. Removals are read
// from the consumer's reconciliation counter (the only path that deletes
// here: the owner changes nothing and sends no DELETE) and from the final
// imports.
func TestRestartNeverRemovesWhatTheOwnerExports(t *testing.T) {
	var cases []restartCase
	if n := *restartServices; n > 0 {
		c := restartCase{services: n, latency: *restartLatency, window: *restartWindow, extensions: !*restartPlain, grace: 30 * time.Second}
		if c.extensions {
			// A grace timer armed on a negotiated stream would fire
			// long before 10,000 services have arrived.
			c.grace = 100 * time.Millisecond
		} else {
			c.window = 1
		}
		for i := range *restartRestarts {
			c.restarts = append(c.restarts, []string{"owner", "consumer"}[i%2])
		}
		cases = append(cases, c)
	} else {
		seed := *restartSeed
		if seed == 0 {
			seed = rand.Uint64()
		}
		t.Logf("restart cases from -restart.seed %d", seed)
		cases = sampleRestartCases(seed, 4)
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("services=%d/extensions=%t", c.services, c.extensions), func(t *testing.T) {
			t.Log(c)
			removed, restarts := runRestartCase(t, c)
			t.Logf("services %d, restarts %d, removed %v", c.services, restarts, removed)
			assert.Zero(t, removed, "imports removed although the owner still exports them")
		})
	}
}

func runRestartCase(t *testing.T, c restartCase) (removed float64, restarts int) {
	p := newPKI(t, "mesh-a", "mesh-b")
	cfg := func(conf *peer.Config) {
		conf.Grace = c.grace
		conf.Window = c.window
		conf.DisableExtensions = !c.extensions
	}
	names := make([]string, c.services)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%05d", i)
	}
	var owner, consumer *agent
	if c.ownerDials {
		consumer = newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), "")}, cfg)
		owner = newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), delayed(t, consumer.addr, c.latency))}, cfg)
	} else {
		owner = newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, cfg)
		consumer = newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), delayed(t, owner.addr, c.latency))}, cfg)
	}
	owner.export(names, "mesh-a")
	// Before any restart: the first full sync, then one reconciliation.
	consumer.eventuallyImportsAll("mesh-b", names)
	consumer.eventuallyReconciled(1)

	reconciled := 1.0
	for _, side := range c.restarts {
		switch side {
		case "owner":
			owner.restart()
			owner.export(names, "mesh-a")
			reconciled++
		case "consumer":
			removed += consumer.reconciledRemoved()
			consumer.restart()
			reconciled = 1
		}
		restarts++
		consumer.eventuallyReconciled(reconciled)
		consumer.eventuallyImportsAll("mesh-b", names)
		for _, imp := range consumer.catalog.Imports() {
			require.True(t, imp.StaleSince.IsZero(), "%s is still stale after the resync", imp.ResourceID)
		}
	}
	return removed + consumer.reconciledRemoved(), restarts
}

func (a *agent) reconciledRemoved() float64 {
	return a.counter("meshfed_hamlet_reconciled_removed_total", map[string]string{"peer": other(a.name)})
}

func other(name string) string {
	if name == "mesh-a" {
		return "mesh-b"
	}
	return "mesh-a"
}

// eventuallyReconciled waits for the consumer's n-th reconciliation since
// it started: the resync after a restart is over.
func (a *agent) eventuallyReconciled(n float64) {
	a.t.Helper()
	require.Eventually(a.t, func() bool {
		return a.counter("meshfed_hamlet_reconciliations_total", map[string]string{"peer": other(a.name)}) >= n
	}, 10*time.Minute, 10*time.Millisecond, "%s reconciliation %v", a.name, n)
}

// eventuallyImportsAll is eventuallyImports for large catalogs: it
// compares counts while waiting, then the names once.
func (a *agent) eventuallyImportsAll(peerName string, want []string) {
	a.t.Helper()
	require.Eventually(a.t, func() bool {
		if a.catalog.ImportCount(peerName) != len(want) {
			return false
		}
		for _, imp := range a.catalog.Imports() {
			if imp.Peer == peerName && !imp.StaleSince.IsZero() {
				return false
			}
		}
		return true
	}, 10*time.Minute, 10*time.Millisecond, "%s imports from %s", a.name, peerName)
	assert.ElementsMatch(a.t, want, a.importedIDs(peerName))
}

// delayed is an address that reaches target with delay added each way.
func delayed(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	p, err := delayproxy.New(target, delay)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p.Addr()
}
