package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"syscall"

	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/examples/twomesh"
)

// dedicatedPorts is the size of each egress gateway's range of dedicated
// listener ports.
const dedicatedPorts = 10

// portPicker hands out ports: free ones the system picks, or consecutive
// ones from a base. Either way a port is tried before it is handed out, so
// that a port in use is reported by its number and its purpose rather than
// by a process that fails later.
type portPicker struct {
	next int
	// hint says what to do when a port is in use.
	hint string
}

func (p *portPicker) pick(ip, what string) (uint32, error) {
	port := 0
	if p.next > 0 {
		port = p.next
		p.next++
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		return 0, portError(ip, port, what, p.hint, err)
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port), nil
}

func (p *portPicker) addr(ip, what string) (string, error) {
	port, err := p.pick(ip, what)
	return twomesh.HostPort(ip, port), err
}

// portRange hands out n consecutive ports, each tried.
func (p *portPicker) portRange(ip, what string, n int) (uint32, uint32, error) {
	if p.next == 0 {
		// Free ones the system picks are not consecutive: a range of one
		// port is enough for the one TCP service the demo imports.
		port, err := p.pick(ip, what)
		return port, port, err
	}
	from := uint32(p.next)
	for range n {
		if _, err := p.pick(ip, what); err != nil {
			return 0, 0, err
		}
	}
	return from, from + uint32(n) - 1, nil
}

func portError(ip string, port int, what, hint string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("port %d on %s (%s) is in use; %s", port, ip, what, hint)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%s (%s) is not an address of this host: the demo gives each mesh a loopback address of its own (127.0.10.1, 127.0.20.1), as on Linux", ip, what)
	}
	return fmt.Errorf("%s (%s): %w", net.JoinHostPort(ip, fmt.Sprint(port)), what, err)
}

// layout assigns every address of both meshes and starts the upstream
// servers behind their exported services.
func layout(root string, basePort int) ([]*mesh, error) {
	p := &portPicker{next: basePort, hint: "pick other ports with -base-port, or leave it out to use free ones"}
	a := &mesh{Mesh: &twomesh.Mesh{Name: "mesh-a", Service: "inventory", IP: "127.0.10.1"}}
	b := &mesh{Mesh: &twomesh.Mesh{Name: "mesh-b", Service: "payments", IP: "127.0.20.1"}}
	a.peer, b.peer = b, a
	a.Peer, b.Peer = b.Mesh, a.Mesh
	meshes := []*mesh{a, b}
	for _, m := range meshes {
		m.Dir = filepath.Join(root, m.Name)
		m.logPath = filepath.Join(m.Dir, "agent.log")
		if err := m.assign(p); err != nil {
			closeUpstreams(meshes)
			return nil, err
		}
	}
	return meshes, nil
}

func (m *mesh) assign(p *portPicker) error {
	var err error
	for _, a := range []struct {
		addr *string
		what string
	}{{&m.Federation, "federation"}, {&m.Admin, "admin"}, {&m.DNS, "DNS"}} {
		if *a.addr, err = p.addr("127.0.0.1", m.Name+" agent "+a.what); err != nil {
			return err
		}
	}
	// The gateways get their SVID keys over xDS: a Unix socket, which only
	// this user may open.
	m.XDS = "unix://" + filepath.Join(m.Dir, "xds.sock")
	if m.IngressPort, err = p.pick(m.IP, m.Name+" ingress gateway"); err != nil {
		return err
	}
	if m.PortsFrom, m.PortsTo, err = p.portRange(m.IP, m.Name+" egress dedicated ports", dedicatedPorts); err != nil {
		return err
	}
	// The egress gateway serves imported HTTP and gRPC services on their
	// own ports.
	for _, port := range []int{twomesh.HTTPPort, twomesh.GRPCPort} {
		fixed := &portPicker{next: port, hint: "stop what listens there: the gateway serves the imported service on its own port"}
		if _, err := fixed.pick(m.IP, m.Name+" egress gateway, the imported service's own port"); err != nil {
			return err
		}
	}
	return m.startUpstreams(p)
}

func (m *mesh) startUpstreams(p *portPicker) error {
	ports := make([]uint32, 3)
	for i, what := range []string{"HTTP", "gRPC", "TCP"} {
		var err error
		if ports[i], err = p.pick("127.0.0.1", fmt.Sprintf("%s %s upstream", m.Service, what)); err != nil {
			return err
		}
	}
	var err error
	if m.up.http, err = upstream.HTTP(m.Service+"-http", twomesh.HostPort("127.0.0.1", ports[0])); err != nil {
		return err
	}
	if m.up.grpc, err = upstream.GRPC(m.Service+"-grpc", twomesh.HostPort("127.0.0.1", ports[1])); err != nil {
		return err
	}
	if m.up.tcp, err = upstream.TCPEcho(m.Service+"-tcp", twomesh.HostPort("127.0.0.1", ports[2])); err != nil {
		return err
	}
	m.Upstreams.HTTP, m.Upstreams.GRPC, m.Upstreams.TCP = ports[0], ports[1], ports[2]
	return nil
}

func closeUpstreams(meshes []*mesh) {
	for _, m := range meshes {
		for _, s := range []*upstream.Server{m.up.http, m.up.grpc, m.up.tcp} {
			if s != nil {
				_ = s.Close()
			}
		}
	}
}
