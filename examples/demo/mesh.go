package main

import (
	"context"
	"fmt"
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
	done    chan error
	egress  *envoyrun.Envoy
	ingress *envoyrun.Envoy
	up      struct{ http, grpc, tcp *upstream.Server }
}

// write creates the mesh's CA, configuration and registry file.
func (m *mesh) write() error {
	if err := twomesh.WriteCA(filepath.Dir(m.Dir), m.Name); err != nil {
		return err
	}
	fmt.Printf("    %s: development CA and SVIDs of trust domain %s in %s\n", m.Name, m.TrustDomain(), m.CertsDir())
	if err := m.WriteConfig(); err != nil {
		return err
	}
	return m.WriteServices(true)
}

func (m *mesh) start(ctx context.Context, bin string) error {
	log, err := os.Create(m.logPath)
	if err != nil {
		return err
	}
	m.cmd = exec.Command(bin, "run", "--config", m.ConfigPath())
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		return err
	}
	m.done = make(chan error, 1)
	go func() { m.done <- m.cmd.Wait(); log.Close() }()
	fmt.Printf("    %s: meshfed run --config %s (pid %d), exporting %s to %s\n", m.Name, m.ConfigPath(), m.cmd.Process.Pid, m.FQDN(), m.peer.Name)
	return nil
}

// stop stops the gateways, then the agent.
func (m *mesh) stop() error {
	for _, e := range []*envoyrun.Envoy{m.egress, m.ingress} {
		if e != nil {
			if err := e.Stop(); err != nil {
				return err
			}
		}
	}
	if m.cmd == nil || m.done == nil {
		return nil
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		m.done = nil
		if err != nil {
			return fmt.Errorf("%s agent: %v (see %s)", m.Name, err, m.logPath)
		}
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		m.done = nil
		return fmt.Errorf("%s agent did not stop within 15s", m.Name)
	}
	return nil
}

func (m *mesh) client() *admin.Client { return &admin.Client{BaseURL: "http://" + m.Admin} }

// waitImports waits until the agent imported its peer's service with its
// three ports.
func (m *mesh) waitImports(ctx context.Context) error {
	for {
		var v []agent.ImportView
		err := m.client().Get(ctx, "/api/v1/imports", &v)
		if err == nil && len(v) == 1 && len(v[0].Instances) == 3 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no import after 60s (last error: %v)", err)
		case exit := <-m.done:
			m.done = nil
			return fmt.Errorf("the agent exited: %v", exit)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *mesh) describeImports(ctx context.Context) error {
	var v []agent.ImportView
	if err := m.client().Get(ctx, "/api/v1/imports", &v); err != nil {
		return err
	}
	step("%s imported %d service(s)", m.Name, len(v))
	for _, imp := range v {
		fmt.Printf("    %s from peer %s, reached through the owner's ingress at %s\n", imp.FQDN, imp.Peer, endpoints(imp))
		for _, in := range imp.Instances {
			fmt.Printf("      port %q (%s): local workloads call %s:%d on the egress gateway (Host: %s)\n", in.Instance, in.Protocol, in.Address, in.Port, in.LocalFQDN)
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
		fmt.Printf("    %s %s: %d clusters, %d listeners, %d routing scopes, %d secrets\n", m.Name, node,
			len(st[resource.ClusterType]), len(st[resource.ListenerType]), len(st[resource.ScopedRouteType]), len(st[resource.SecretType]))
		for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
			names := make([]string, 0, len(st[typ]))
			for n := range st[typ] {
				names = append(names, n)
			}
			sort.Strings(names)
			fmt.Printf("      %-9s %s\n", typ[strings.LastIndexByte(typ, '.')+1:]+"s", strings.Join(names, "  "))
		}
	}
	return nil
}
