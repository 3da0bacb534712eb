package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/envoyrun/envoytest"
)

// pairs draws the given pairs in order, then random ones.
func pairs(given ...[2]string) addressPair {
	var mu sync.Mutex
	return func() (string, string) {
		mu.Lock()
		defer mu.Unlock()
		if len(given) == 0 {
			return randomPair()
		}
		p := given[0]
		given = given[1:]
		return p[0], p[1]
	}
}

// distinctPairs draws n pairs that share no address.
func distinctPairs(n int) [][2]string {
	seen := map[string]bool{}
	var out [][2]string
	for len(out) < n {
		a, b := randomPair()
		if !seen[a] {
			seen[a] = true
			out = append(out, [2]string{a, b})
		}
	}
	return out
}

func TestLayoutDrawsAgainWhenAddressesAreTaken(t *testing.T) {
	p := distinctPairs(4)
	root := t.TempDir()

	// A running demo's addresses are claimed: a second demo that draws
	// them draws again.
	first, held, err := layout(root, 0, pairs(p[0]))
	require.NoError(t, err)
	defer held.close()
	require.Equal(t, p[0][0], first[0].IP)
	// What the first demo holds until it ends is its claim, not its ports.
	held.release()
	second, held2, err := layout(root, 0, pairs(p[0], p[1]))
	require.NoError(t, err)
	defer held2.close()
	require.Equal(t, []string{p[1][0], p[1][1]}, []string{second[0].IP, second[1].IP})

	// A service port taken on the address of the egress gateway that
	// serves it is picked instead.
	l, err := net.Listen("tcp", net.JoinHostPort(p[2][0], "9090"))
	require.NoError(t, err)
	defer l.Close()
	third, held3, err := layout(root, 0, pairs(p[2]))
	require.NoError(t, err)
	defer held3.close()
	require.Equal(t, p[2][0], third[0].IP)
	require.NotEqual(t, uint32(9090), third[1].ServicePorts.GRPC)
	require.NotZero(t, third[1].ServicePorts.GRPC)

	// Every port of a mesh is on its address, and no two are one.
	for _, ms := range [][]*mesh{first, second, third} {
		seen := map[string]string{}
		for _, m := range ms {
			for what, addr := range map[string]string{
				"federation": m.Federation, "admin": m.Admin, "dns": m.DNS,
				"ingress": fmt.Sprintf("%s:%d", m.IP, m.IngressPort),
				"egress":  fmt.Sprintf("%s:%d", m.IP, m.PortsFrom),
				"http":    fmt.Sprintf("%s:%d", m.UpstreamIP, m.Upstreams.HTTP),
				"grpc":    fmt.Sprintf("%s:%d", m.UpstreamIP, m.Upstreams.GRPC),
				"tcp":     fmt.Sprintf("%s:%d", m.UpstreamIP, m.Upstreams.TCP),
			} {
				host, _, err := net.SplitHostPort(addr)
				require.NoError(t, err)
				if !strings.HasPrefix(what, "service") {
					require.Equal(t, m.IP, host, "%s %s", m.Name, what)
				}
				require.Empty(t, seen[addr], "%s %s is %s's too", m.Name, what, seen[addr])
				seen[addr] = m.Name + " " + what
			}
		}
	}

	// Drawing nothing but taken addresses, it says what it found taken.
	_, _, err = layout(root, 0, pairs(p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0]))
	require.EqualError(t, err, fmt.Sprintf("no free pair of loopback addresses in 20 draws; the last: port 65535 on %s (the claim of a demo on this address) is in use: taken; stop what listens there", p[0][0]))
}

func TestUntilNamesWhatItWaitedFor(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("the demo's deadline of 5m0s (-timeout) passed"))
	tries := 0
	err := until(ctx, "the thing to happen", func(context.Context) error { tries++; return errors.New("2 of 3 so far") })
	require.EqualError(t, err, "gave up waiting for the thing to happen after 0s (the demo's deadline of 5m0s (-timeout) passed); the last try: 2 of 3 so far")
	require.Equal(t, 1, tries)

	// A final error ends the wait at once, with the deadline far away.
	err = until(context.Background(), "the agent to import", func(context.Context) error { return final{errors.New("the agent exited")} })
	require.EqualError(t, err, "waiting for the agent to import: the agent exited")
}

// buildMeshfed builds the agent the demo runs.
func buildMeshfed(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshfed")
	build := exec.Command("go", "build", "-o", bin, "./cmd/meshfed")
	build.Dir = filepath.Join("..", "..")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/meshfed:\n%s", out)
	return bin
}

// Two demos run at once on one host, both drawing the same addresses
// first, and both federate their meshes and cross them both ways.
func TestTwoDemosRunSideBySide(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two demos: four agents and eight Envoy gateways")
	}
	envoytest.Binary(t)
	bin := buildMeshfed(t)
	first := distinctPairs(1)[0]
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			errs[i] = run(context.Background(), options{bin: bin, dir: t.TempDir(), timeout: DefaultTimeout, out: &outs[i], draw: pairs(first)})
		})
	}
	wg.Wait()
	addrs := regexp.MustCompile(`mesh-a on (\S+), mesh-b on (\S+):`)
	var ips []string
	for i := range 2 {
		out := outs[i].String()
		require.NoError(t, errs[i], "demo %d:\n%s", i, out)
		m := addrs.FindStringSubmatch(out)
		require.NotNil(t, m, out)
		ips = append(ips, m[1], m[2])
		// Each ingress saw the other mesh's egress call each of the three
		// ports of its service.
		for _, callers := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^      spiffe://mesh-a\.example/meshfed/gateway/egress, SNI outbound_\.\d+_\._\.payments\.mesh-b\.example$`),
			regexp.MustCompile(`(?m)^      spiffe://mesh-b\.example/meshfed/gateway/egress, SNI outbound_\.\d+_\._\.inventory\.mesh-a\.example$`),
		} {
			require.Len(t, callers.FindAllString(out, -1), 3, out)
		}
		require.True(t, strings.HasSuffix(out, "\nDone.\n"), out)
	}
	// One had the addresses both drew first, the other drew again.
	require.Contains(t, []string{ips[0], ips[2]}, first[0])
	require.NotEqual(t, ips[0], ips[2])
	require.NotEqual(t, ips[1], ips[3])
}
