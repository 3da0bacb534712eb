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
	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// mesh is one demo mesh: its addresses and the service it exports.
type mesh struct {
	name, td                string
	federation, xds, admin  string
	dns                     string
	egressPort, ingressPort uint32
	portsFrom, portsTo      uint32
	service                 string
	upstreamPort            uint32
	dir, logPath            string
	cmd                     *exec.Cmd
	done                    chan error
}

func meshA() *mesh {
	return &mesh{name: "mesh-a", td: "mesh-a.example", federation: "127.0.0.1:15443", xds: "127.0.0.1:18000",
		admin: "127.0.0.1:19100", dns: "127.0.0.1:15353", egressPort: 15001, ingressPort: 15444,
		portsFrom: 21000, portsTo: 21099, service: "inventory", upstreamPort: 9080}
}

func meshB() *mesh {
	return &mesh{name: "mesh-b", td: "mesh-b.example", federation: "127.0.0.1:16443", xds: "127.0.0.1:18100",
		admin: "127.0.0.1:19200", dns: "127.0.0.1:16353", egressPort: 16001, ingressPort: 16444,
		portsFrom: 22000, portsTo: 22099, service: "payments", upstreamPort: 9081}
}

func (m *mesh) other(all []*mesh) *mesh {
	for _, o := range all {
		if o != m {
			return o
		}
	}
	return nil
}

// write creates the mesh's CA, configuration and registry file.
func (m *mesh) write(ctx context.Context, bin, root string, all []*mesh) error {
	m.dir = filepath.Join(root, m.name)
	m.logPath = filepath.Join(m.dir, "agent.log")
	certs := filepath.Join(m.dir, "certs")
	if _, err := os.Stat(filepath.Join(certs, "ca.pem")); err != nil {
		out, err := exec.CommandContext(ctx, bin, "certs", "init", "--trust-domain", m.td, "--out", certs).CombinedOutput()
		if err != nil {
			return fmt.Errorf("meshfed certs init: %v: %s", err, out)
		}
		fmt.Printf("    %s", out)
	}
	o := m.other(all)
	dial := ""
	if m.name == "mesh-b" {
		dial = o.federation // mesh-b dials; mesh-a accepts
	}
	cfg := fmt.Sprintf(`# meshfed demo: %[1]s (written by examples/demo)
trustDomain: %[2]s
identity:
  agent: {cert: certs/agent.pem, key: certs/agent-key.pem}
  egress: {cert: certs/egress.pem, key: certs/egress-key.pem}
  ingress: {cert: certs/ingress.pem, key: certs/ingress-key.pem}
trustBundles:
  %[2]s: {file: certs/bundle.pem}
  %[3]s: {file: ../%[4]s/certs/bundle.pem}
federation:
  listen: %[5]s
  ingress: [{address: 127.0.0.1, port: %[6]d}]
peers:
  - name: %[4]s
    trustDomain: %[3]s
    dial: "%[7]s"
    allowLoopback: true   # both meshes run on this host
xds:
  listen: %[8]s
admin:
  listen: %[9]s
dns:
  listen: %[10]s
gateways:
  egress:
    listen: {address: 127.0.0.1}
    ports: {from: %[11]d, to: %[12]d}
  ingress:
    listen: {address: 127.0.0.1, port: %[6]d}
exports:
  file: services.yaml
store:
  path: meshfed.db
`, m.name, m.td, o.td, o.name, m.federation, m.ingressPort, dial, m.xds, m.admin, m.dns, m.portsFrom, m.portsTo)
	services := fmt.Sprintf(`services:
  - name: %[1]s
    fqdn: %[1]s.%[2]s
    consumers: [%[3]s]
    ports:
      - name: http
        port: 8080
        protocol: HTTP
        endpoints: [{address: 127.0.0.1, port: %[4]d}]
`, m.service, m.td, o.name, m.upstreamPort)
	if err := os.WriteFile(filepath.Join(m.dir, "meshfed.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(m.dir, "services.yaml"), []byte(services), 0o644)
}

func (m *mesh) start(ctx context.Context, bin string) error {
	log, err := os.Create(m.logPath)
	if err != nil {
		return err
	}
	m.cmd = exec.Command(bin, "run", "--config", filepath.Join(m.dir, "meshfed.yaml"))
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		return err
	}
	m.done = make(chan error, 1)
	go func() { m.done <- m.cmd.Wait(); log.Close() }()
	fmt.Printf("    %s: meshfed run --config %s (pid %d), exporting %s.%s to %s\n", m.name, filepath.Join(m.dir, "meshfed.yaml"), m.cmd.Process.Pid, m.service, m.td, "its peer")
	return nil
}

func (m *mesh) stop() error {
	if m.cmd == nil || m.done == nil {
		return nil
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		m.done = nil
		if err != nil {
			return fmt.Errorf("%s agent: %v (see %s)", m.name, err, m.logPath)
		}
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		m.done = nil
		return fmt.Errorf("%s agent did not stop within 15s", m.name)
	}
	return nil
}

func (m *mesh) client() *admin.Client { return &admin.Client{BaseURL: "http://" + m.admin} }

func (m *mesh) waitImports(ctx context.Context, n int) error {
	for {
		var v []agent.ImportView
		err := m.client().Get(ctx, "/api/v1/imports", &v)
		if err == nil && len(v) >= n && len(v[0].Instances) > 0 {
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
	step("%s imported %d service(s)", m.name, len(v))
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
	conn, err := grpc.NewClient(m.xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
				return fmt.Errorf("%s ADS stream: %v", m.name, err)
			case <-ctx.Done():
				cancel()
				return ctx.Err()
			}
		}
		cancel()
		<-done
		st := c.State()
		fmt.Printf("    %s %s: %d clusters, %d listeners, %d route configurations, %d secrets\n", m.name, node,
			len(st[resource.ClusterType]), len(st[resource.ListenerType]), len(st[resource.RouteType]), len(st[resource.SecretType]))
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

func (m *mesh) askDNS(name string) error {
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	for _, qt := range []uint16{dns.TypeA, dns.TypeSRV} {
		r, _, err := c.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), qt), m.dns)
		if err != nil {
			return fmt.Errorf("DNS query: %w", err)
		}
		if len(r.Answer) == 0 {
			return fmt.Errorf("DNS: no %s answer for %s (%s)", dns.TypeToString[qt], name, dns.RcodeToString[r.Rcode])
		}
		for _, rr := range r.Answer {
			fmt.Printf("    %s\n", rr.String())
		}
	}
	return nil
}
