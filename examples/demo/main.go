// Command demo runs two federated meshes on loopback: it creates a
// development CA for each, starts two meshfed agents (mesh-a exports
// inventory, mesh-b exports payments), waits until each imported the
// other's service, and shows what each side imported, what it serves its
// Envoy gateways, and a DNS answer for an imported name. `make demo` runs it.
package main

import (
	"context"

	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("meshfed", "bin/meshfed", "the meshfed binary")
	dir := flag.String("dir", "", "where to write CAs, configurations, stores and logs (default: a new temporary folder)")
	keep := flag.Bool("keep", false, "keep the agents running until interrupted")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *dir, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, dir string, keep bool) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (run `make build` first)", err)
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "meshfed-demo-"); err != nil {
			return err
		}
	}
	step("Working in %s", dir)

	meshes := []*mesh{meshA(), meshB()}
	for _, m := range meshes {
		if err := m.write(ctx, bin, dir, meshes); err != nil {
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
		if err := m.waitImports(wait, 1); err != nil {
			return fmt.Errorf("%s: %w (see %s)", m.name, err, m.logPath)
		}
	}
	for _, m := range meshes {
		if err := m.describeImports(ctx); err != nil {
			return err
		}
	}
	step("What each agent serves its Envoy gateways (read over ADS, as a gateway would)")
	for _, m := range meshes {
		if err := m.describeGateways(wait); err != nil {
			return err
		}
	}
	step("Asking mesh-a's DNS server (%s) for the name it imported", meshes[0].dns)
	if err := meshes[0].askDNS("payments.mesh-b.example"); err != nil {
		return err
	}
	step("`meshfed status` of mesh-a")
	status := exec.CommandContext(ctx, bin, "status", "--agent", "http://"+meshes[0].admin)
	status.Stdout, status.Stderr = os.Stdout, os.Stderr
	if err := status.Run(); err != nil {
		return fmt.Errorf("meshfed status: %w", err)
	}
	if err := envoyRequest(ctx, meshes); err != nil {
		return err
	}
	if keep {
		step("The agents keep running; interrupt to stop them")
		<-ctx.Done()
	}
	step("Stopping the agents")
	for _, m := range meshes {
		if err := m.stop(); err != nil {
			return err
		}
	}
	fmt.Println("\nDone: both meshes imported each other's service over mutual TLS.")
	return nil
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}
