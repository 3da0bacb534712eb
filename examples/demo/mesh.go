package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/envoyrun"
	"github.com/meshfed/meshfed/examples/twomesh"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// mesh is one demo mesh: its files and addresses (twomesh), its agent
// process, its gateways and the upstream servers of the service it exports.
type mesh struct {
	*twomesh.Mesh
	peer    *mesh
	logPath string
	cmd     *exec.Cmd
	// exited is closed once the agent process ended, with exitErr.
	exited  chan struct{}
	exitErr error
	stopped bool
	out     io.Writer
	egress  *envoyrun.Envoy
	ingress *envoyrun.Envoy
	up      struct{ http, grpc, tcp *upstream.Server }
}

// write creates the mesh's CA, configuration and registry file.
func (m *mesh) write() error {
	if err := twomesh.WriteCA(filepath.Dir(m.Dir), m.Name); err != nil {
		return err
	}
	fmt.Fprintf(m.out, "    %s: development CA and SVIDs of trust domain %s in %s\n", m.Name, m.TrustDomain(), m.CertsDir())
	if err := m.WriteConfig(); err != nil {
		return err
	}
	return m.WriteServices(true)
}

func (m *mesh) start(bin string) error {
	log, err := os.Create(m.logPath)
	if err != nil {
		return err
	}
	m.cmd = exec.Command(bin, "run", "--config", m.ConfigPath())
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		log.Close()
		return err
	}
	m.exited = make(chan struct{})
	go func() {
		m.exitErr = m.cmd.Wait()
		log.Close()
		close(m.exited)
	}()
	fmt.Fprintf(m.out, "    %s: meshfed run --config %s (pid %d), exporting %s to %s\n", m.Name, m.ConfigPath(), m.cmd.Process.Pid, m.FQDN(), m.peer.Name)
	return nil
}

// agentExited is a final error once the agent process ended.
func (m *mesh) agentExited() error {
	select {
	case <-m.exited:
		return final{fmt.Errorf("the %s agent exited: %v (see %s)", m.Name, m.exitErr, m.logPath)}
	default:
		return nil
	}
}

// stop stops the gateways, then the agent; once.
func (m *mesh) stop() error {
	if m.stopped {
		return nil
	}
	m.stopped = true
	for _, e := range []*envoyrun.Envoy{m.egress, m.ingress} {
		if e != nil {
			if err := e.Stop(); err != nil {
				return err
			}
		}
	}
	if m.cmd == nil {
		return nil
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		if m.exitErr != nil {
			return fmt.Errorf("%s agent: %v (see %s)", m.Name, m.exitErr, m.logPath)
		}
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
		return fmt.Errorf("%s agent did not stop within 15s of SIGTERM (see %s)", m.Name, m.logPath)
	}
	return nil
}

func (m *mesh) client() *admin.Client { return &admin.Client{BaseURL: "http://" + m.Admin} }

// waitImports waits until the agent imported its peer's service with its
// three ports.
func (m *mesh) waitImports(ctx context.Context) error {
	what := fmt.Sprintf("%s's agent to import %s from %s with its 3 ports (GET http://%s/api/v1/imports)", m.Name, m.peer.FQDN(), m.peer.Name, m.Admin)
	return until(ctx, what, func(ctx context.Context) error {
		if err := m.agentExited(); err != nil {
			return err
		}
		var v []agent.ImportView
		if err := m.client().Get(ctx, "/api/v1/imports", &v); err != nil {
			return err
		}
		switch {
		case len(v) == 0:
			return errors.New("no import yet")
		case len(v[0].Instances) != 3:
			return fmt.Errorf("%s has %d of its 3 ports", v[0].FQDN, len(v[0].Instances))
		}
		return nil
	})
}

func (m *mesh) describeImports(ctx context.Context) error {
	var v []agent.ImportView
	if err := m.client().Get(ctx, "/api/v1/imports", &v); err != nil {
		return err
	}
	step(m.out, "%s imported %d service(s)", m.Name, len(v))
	for _, imp := range v {
		fmt.Fprintf(m.out, "    %s from peer %s, reached through the owner's ingress at %s\n", imp.FQDN, imp.Peer, endpoints(imp))
		for _, in := range imp.Instances {
			fmt.Fprintf(m.out, "      port %q (%s): local workloads call %s:%d on the egress gateway (Host: %s)\n", in.Instance, in.Protocol, in.Address, in.Port, in.LocalFQDN)
		}
	}
	return nil
}

func endpoints(imp agent.ImportView) string {
	var s []string
	for _, e := range imp.Endpoints {
		s = append(s, fmt.Sprintf("%s:%d", e.Address, e.Port))
	}
	return strings.Join(s, ", ")
}

// describeGateways connects to the agent's ADS endpoint as each gateway
// and lists what it receives.
func (m *mesh) describeGateways(ctx context.Context) error {
	conn, err := grpc.NewClient(m.XDS, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, node := range []string{"egress-gateway", "ingress-gateway"} {
		c := adsclient.New(adsclient.Options{NodeID: node, Delta: true})
		updates := make(chan adsclient.Update, 16)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(cctx, conn, updates) }()
		seen := map[string]bool{}
		for len(seen) < len(adsclient.Types) {
			select {
			case u := <-updates:
				seen[u.TypeURL] = true
			case err := <-done:
				cancel()
				return fmt.Errorf("%s ADS stream: %v", m.Name, err)
			case <-ctx.Done():
				cancel()
				return ctx.Err()
			}
		}
		cancel()
		<-done
		st := c.State()
		fmt.Fprintf(m.out, "    %s %s: %d clusters, %d listeners, %d routing scopes, %d secrets\n", m.Name, node,
			len(st[resource.ClusterType]), len(st[resource.ListenerType]), len(st[resource.ScopedRouteType]), len(st[resource.SecretType]))
		for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
			names := make([]string, 0, len(st[typ]))
			for n := range st[typ] {
				names = append(names, n)
			}
			sort.Strings(names)
			fmt.Fprintf(m.out, "      %-9s %s\n", typ[strings.LastIndexByte(typ, '.')+1:]+"s", strings.Join(names, "  "))
		}
	}
	return nil
}
