// Command demo runs two federated meshes on loopback with real Envoy
// gateways: it creates a development CA for each, starts two meshfed agents
// (mesh-a exports inventory, mesh-b exports payments, each with an HTTP, a
// gRPC and a TCP port), starts each mesh's egress and ingress Envoy, and
// sends requests both ways the way a workload would: it resolves the
// imported name with its mesh's meshfed DNS server and connects where the
// answer says. It prints what came back and which SPIFFE ID the owner's
// ingress saw. `make demo` runs it.
//
// Each mesh has a loopback address of its own, drawn at random from
// 127.128.0.0/10 and claimed for the demo's run, and every port is picked
// on it (the services' own ports are 8080 and 9090 when free), so that
// demos run side by side. Its waits share one generous deadline
// (-timeout); giving up, it names what it was waiting for.
//
// Without an envoy binary it says so and shows what the agents would serve
// the gateways instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshfed/meshfed/envoyrun"
)

func main() {
	o := options{out: os.Stdout, draw: randomPair}
	flag.StringVar(&o.bin, "meshfed", "bin/meshfed", "the meshfed binary")
	flag.StringVar(&o.dir, "dir", "", "where to write CAs, configurations, stores and logs (default: a new temporary folder, removed at the end unless -keep)")
	flag.BoolVar(&o.keep, "keep", false, "keep the meshes running until interrupted, and their folder afterwards")
	flag.IntVar(&o.basePort, "base-port", 0, "use consecutive ports from this one instead of free ones the system picks")
	flag.DurationVar(&o.timeout, "timeout", DefaultTimeout, "how long the demo waits, all told, for the meshes to federate and the requests to cross")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo:", err)
		os.Exit(1)
	}
}

type options struct {
	bin, dir string
	keep     bool
	basePort int
	timeout  time.Duration
	// out receives what the demo shows.
	out io.Writer
	// draw draws the meshes' loopback addresses.
	draw addressPair
}

func run(ctx context.Context, o options) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (run `make build` first)", err)
	}
	w := o.out
	dir, cleanup, err := workDir(w, o)
	if err != nil {
		return err
	}
	defer cleanup()

	meshes, ports, err := layout(dir, o.basePort, o.draw)
	if err != nil {
		return err
	}
	defer ports.close()
	defer closeUpstreams(meshes)
	step(w, "mesh-a on %s, mesh-b on %s: each mesh's agent, gateways and services on a loopback address of its own", meshes[0].IP, meshes[1].IP)
	for _, m := range meshes {
		m.out = w
		if err := m.write(); err != nil {
			return err
		}
	}
	// What assign held, the upstreams, agents and gateways now bind.
	ports.release()
	for _, m := range meshes {
		if err := m.startUpstreams(); err != nil {
			return err
		}
	}
	step(w, "Starting two agents (logs in %s/<mesh>/agent.log)", dir)
	for _, m := range meshes {
		if err := m.start(bin); err != nil {
			return err
		}
		defer m.stop()
	}
	wait, cancel := context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("the demo's deadline of %s (-timeout) passed", o.timeout))
	defer cancel()
	for _, m := range meshes {
		if err := m.waitImports(wait); err != nil {
			return fmt.Errorf("%s: %w (see %s)", m.Name, err, m.logPath)
		}
	}
	for _, m := range meshes {
		if err := m.describeImports(wait); err != nil {
			return err
		}
	}
	if err := gateways(wait, w, meshes); err != nil {
		return err
	}
	step(w, "`meshfed status` of mesh-a")
	status := exec.CommandContext(wait, bin, "status", "--agent", "http://"+meshes[0].Admin)
	status.Stdout, status.Stderr = w, w
	if err := status.Run(); err != nil {
		return fmt.Errorf("meshfed status: %w", err)
	}
	if o.keep {
		step(w, "The meshes keep running; interrupt to stop them. Their folder stays: %s", dir)
		<-ctx.Done()
	}
	step(w, "Stopping")
	for _, m := range meshes {
		if err := m.stop(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "\nDone.")
	return nil
}

// gateways starts the four Envoy gateways and sends requests across them,
// or, without Envoy, shows what the agents serve their gateways.
func gateways(ctx context.Context, w io.Writer, meshes []*mesh) error {
	envoy, err := envoyrun.Binary()
	if err != nil {
		step(w, "No Envoy: %v", err)
		fmt.Fprintln(w, "    Showing what each agent serves its gateways instead (read over ADS, as a gateway would).")
		for _, m := range meshes {
			if err := m.describeGateways(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	step(w, "Starting four Envoy gateways (%s)", envoy)
	for _, m := range meshes {
		if err := m.startGateways(ctx, envoy); err != nil {
			return err
		}
	}
	for _, m := range meshes {
		if err := m.waitGateways(ctx); err != nil {
			return err
		}
	}
	for _, m := range meshes {
		if err := m.callPeer(ctx); err != nil {
			return fmt.Errorf("%s -> %s: %w", m.Name, m.peer.Name, err)
		}
	}
	return nil
}

// workDir is the folder of the run: the one given, or a new temporary one
// that the returned function removes unless the meshes are kept.
func workDir(w io.Writer, o options) (string, func(), error) {
	if o.dir != "" {
		step(w, "Working in %s", o.dir)
		return o.dir, func() {}, os.MkdirAll(o.dir, 0o755)
	}
	dir, err := os.MkdirTemp("", "meshfed-demo-")
	if err != nil {
		return "", nil, err
	}
	if o.keep {
		step(w, "Working in %s (kept: -keep)", dir)
		return dir, func() {}, nil
	}
	step(w, "Working in %s (removed at the end; -keep keeps it)", dir)
	return dir, func() {
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintln(os.Stderr, "demo: removing", dir+":", err)
		}
	}, nil
}

func step(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "\n==> "+format+"\n", args...)
}
