// Command demo runs two federated meshes on loopback with real Envoy
// gateways: it creates a development CA for each, starts two meshfed agents
// (mesh-a exports inventory, mesh-b exports payments, each with an HTTP, a
// gRPC and a TCP port), starts each mesh's egress and ingress Envoy, and
// sends requests both ways the way a workload would: it resolves the
// imported name with its mesh's meshfed DNS server and connects where the
// answer says. It prints what came back and which SPIFFE ID the owner's
// ingress saw. `make demo` runs it.
//
// Without an envoy binary it says so and shows what the agents would serve
// the gateways instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshfed/meshfed/envoyrun"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "meshfed", "bin/meshfed", "the meshfed binary")
	flag.StringVar(&o.dir, "dir", "", "where to write CAs, configurations, stores and logs (default: a new temporary folder, removed at the end unless -keep)")
	flag.BoolVar(&o.keep, "keep", false, "keep the meshes running until interrupted, and their folder afterwards")
	flag.IntVar(&o.basePort, "base-port", 0, "use consecutive ports from this one instead of free ones the system picks")
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
}

func run(ctx context.Context, o options) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (run `make build` first)", err)
	}
	dir, cleanup, err := workDir(o)
	if err != nil {
		return err
	}
	defer cleanup()

	meshes, err := layout(dir, o.basePort)
	if err != nil {
		return err
	}
	defer closeUpstreams(meshes)
	for _, m := range meshes {
		if err := m.write(); err != nil {
			return err
		}
	}
	step("Starting two agents (logs in %s/<mesh>/agent.log)", dir)
	for _, m := range meshes {
		if err := m.start(ctx, bin); err != nil {
			return err
		}
		defer m.stop()
	}
	wait, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, m := range meshes {
		if err := m.waitImports(wait); err != nil {
			return fmt.Errorf("%s: %w (see %s)", m.Name, err, m.logPath)
		}
	}
	for _, m := range meshes {
		if err := m.describeImports(ctx); err != nil {
			return err
		}
	}
	if err := gateways(wait, meshes); err != nil {
		return err
	}
	step("`meshfed status` of mesh-a")
	status := exec.CommandContext(ctx, bin, "status", "--agent", "http://"+meshes[0].Admin)
	status.Stdout, status.Stderr = os.Stdout, os.Stderr
	if err := status.Run(); err != nil {
		return fmt.Errorf("meshfed status: %w", err)
	}
	if o.keep {
		step("The meshes keep running; interrupt to stop them. Their folder stays: %s", dir)
		<-ctx.Done()
	}
	step("Stopping")
	for _, m := range meshes {
		if err := m.stop(); err != nil {
			return err
		}
	}
	fmt.Println("\nDone.")
	return nil
}

// gateways starts the four Envoy gateways and sends requests across them,
// or, without Envoy, shows what the agents serve their gateways.
func gateways(ctx context.Context, meshes []*mesh) error {
	envoy, err := envoyrun.Binary()
	if err != nil {
		step("No Envoy: %v", err)
		fmt.Println("    Showing what each agent serves its gateways instead (read over ADS, as a gateway would).")
		for _, m := range meshes {
			if err := m.describeGateways(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	step("Starting four Envoy gateways (%s)", envoy)
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
func workDir(o options) (string, func(), error) {
	if o.dir != "" {
		step("Working in %s", o.dir)
		return o.dir, func() {}, os.MkdirAll(o.dir, 0o755)
	}
	dir, err := os.MkdirTemp("", "meshfed-demo-")
	if err != nil {
		return "", nil, err
	}
	if o.keep {
		step("Working in %s (kept: -keep)", dir)
		return dir, func() {}, nil
	}
	step("Working in %s (removed at the end; -keep keeps it)", dir)
	return dir, func() {
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintln(os.Stderr, "demo: removing", dir+":", err)
		}
	}, nil
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}
