package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/examples/twomesh"
)

// dedicatedPorts is the size of each egress gateway's range of dedicated
// listener ports.
const dedicatedPorts = 10

// claimPort is the port a demo holds on each of its two loopback addresses
// for as long as it runs, so that another demo that draws the same
// addresses finds them taken and draws again: every port of a demo is on
// its addresses, and a port picked there is then no other demo's. It is above the kernel's range of ephemeral ports,
// so no port the system picks for someone else is it.
const claimPort = 65535

// pairTries bounds how many pairs of addresses a demo draws before it
// gives up, naming what it found taken.
const pairTries = 20

// addressPair draws a pair of loopback addresses for the two meshes.
type addressPair func() (a, b string)

// randomPair draws from 127.128.0.0/10, which the end-to-end suite's
// 127.64.0.0/10 and the usual 127.0.0.1 stay out of; every 127.x.y.z is
// loopback on Linux. The pairs of two draws are the same or disjoint.
func randomPair() (string, string) {
	n := rand.N(1 << 14)
	at := func(host int) string { return fmt.Sprintf("127.%d.%d.%d", 128+n>>8, n&0xff, host) }
	return at(10), at(20)
}

// portPicker hands out ports: free ones the system picks, or consecutive
// ones from a base. Either way a port is bound before it is handed out, so
// that a port in use is reported by its number and its purpose rather than
// by a process that fails later, and held until release, so that the
// system picks no port twice.
type portPicker struct {
	next int
	held []net.Listener
	// claims are the claimPort listeners, held until the demo ends.
	claims []net.Listener
}

func (p *portPicker) listen(ip string, port int, what string) (net.Listener, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		return nil, portError(ip, port, what, err)
	}
	return l, nil
}

func (p *portPicker) pick(ip, what string) (uint32, error) {
	port := 0
	if p.next > 0 {
		port = p.next
		p.next++
	}
	l, err := p.listen(ip, port, what)
	if err != nil {
		return 0, err
	}
	p.held = append(p.held, l)
	return uint32(l.Addr().(*net.TCPAddr).Port), nil
}

func (p *portPicker) addr(ip, what string) (string, error) {
	port, err := p.pick(ip, what)
	return twomesh.HostPort(ip, port), err
}

// preferred hands out port when it is free, else picks one as pick does.
func (p *portPicker) preferred(ip string, port int, what string) (uint32, error) {
	if p.next == 0 {
		if l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port))); err == nil {
			p.held = append(p.held, l)
			return uint32(port), nil
		}
	}
	return p.pick(ip, what)
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

// release lets the processes that were given the ports bind them.
func (p *portPicker) release() {
	for _, l := range p.held {
		_ = l.Close()
	}
	p.held = nil
}

// close releases the ports and the claim on the addresses.
func (p *portPicker) close() {
	p.release()
	for _, l := range p.claims {
		_ = l.Close()
	}
	p.claims = nil
}

// errTaken is a port or an address that another process holds: drawing
// other addresses may help.
var errTaken = errors.New("taken")

func portError(ip string, port int, what string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("port %d on %s (%s) is in use: %w", port, ip, what, errTaken)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%s (%s) is not an address of this host: the demo gives each mesh a loopback address of its own (127.x.y.z), as on Linux", ip, what)
	}
	return fmt.Errorf("%s (%s): %w", net.JoinHostPort(ip, fmt.Sprint(port)), what, err)
}

// layout draws the two meshes' loopback addresses, claims them, and
// assigns every port on them (held until the picker's release; the claim
// until its close). Addresses that another demo claimed, or on which a
// port that cannot move is taken, are drawn again.
func layout(root string, basePort int, draw addressPair) ([]*mesh, *portPicker, error) {
	var last error
	for range pairTries {
		ipA, ipB := draw()
		meshes, p, err := layoutOn(root, basePort, ipA, ipB)
		if err == nil {
			return meshes, p, nil
		}
		if !errors.Is(err, errTaken) {
			return nil, nil, err
		}
		last = err
	}
	hint := "stop what listens there"
	if basePort > 0 {
		hint = "pick other ports with -base-port, or leave it out to use free ones"
	}
	return nil, nil, fmt.Errorf("no free pair of loopback addresses in %d draws; the last: %w; %s", pairTries, last, hint)
}

func layoutOn(root string, basePort int, ipA, ipB string) ([]*mesh, *portPicker, error) {
	p := &portPicker{next: basePort}
	a := &mesh{Mesh: &twomesh.Mesh{Name: "mesh-a", Service: "inventory", IP: ipA, UpstreamIP: ipA}}
	b := &mesh{Mesh: &twomesh.Mesh{Name: "mesh-b", Service: "payments", IP: ipB, UpstreamIP: ipB}}
	a.peer, b.peer = b, a
	a.Peer, b.Peer = b.Mesh, a.Mesh
	meshes := []*mesh{a, b}
	if err := p.claim(ipA, ipB); err != nil {
		p.close()
		return nil, nil, err
	}
	for _, m := range meshes {
		m.Dir = filepath.Join(root, m.Name)
		m.logPath = filepath.Join(m.Dir, "agent.log")
		if err := m.assign(p); err != nil {
			p.close()
			return nil, nil, err
		}
	}
	return meshes, p, nil
}

// claim holds claimPort on each address until close.
func (p *portPicker) claim(ips ...string) error {
	for _, ip := range ips {
		l, err := p.listen(ip, claimPort, "the claim of a demo on this address")
		if err != nil {
			return err
		}
		p.claims = append(p.claims, l)
	}
	return nil
}

// assign gives the mesh its ports, all on its own address, as if it were
// on a host of its own.
func (m *mesh) assign(p *portPicker) error {
	var err error
	for _, a := range []struct {
		addr *string
		what string
	}{{&m.Federation, "federation"}, {&m.Admin, "admin"}, {&m.DNS, "DNS"}} {
		if *a.addr, err = p.addr(m.IP, m.Name+" agent "+a.what); err != nil {
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
	// The peer's egress gateway serves the exported service's HTTP and
	// gRPC ports as they are, on the peer's address: the usual 8080 and
	// 9090 when they are free there.
	for _, sp := range []struct {
		port      *uint32
		preferred int
	}{{&m.ServicePorts.HTTP, twomesh.HTTPPort}, {&m.ServicePorts.GRPC, twomesh.GRPCPort}} {
		if *sp.port, err = p.preferred(m.peer.IP, sp.preferred, m.peer.Name+" egress gateway, serving "+m.Service+"'s own port"); err != nil {
			return err
		}
	}
	for _, port := range []*uint32{&m.Upstreams.HTTP, &m.Upstreams.GRPC, &m.Upstreams.TCP} {
		if *port, err = p.pick(m.IP, m.Service+" upstream"); err != nil {
			return err
		}
	}
	return nil
}

// startUpstreams starts the servers behind the exported service, on the
// ports assign held for them (released by then).
func (m *mesh) startUpstreams() error {
	var err error
	if m.up.http, err = bindSoon(upstream.HTTP, m.Service+"-http", twomesh.HostPort(m.IP, m.Upstreams.HTTP)); err != nil {
		return err
	}
	if m.up.grpc, err = bindSoon(upstream.GRPC, m.Service+"-grpc", twomesh.HostPort(m.IP, m.Upstreams.GRPC)); err != nil {
		return err
	}
	m.up.tcp, err = bindSoon(upstream.TCPEcho, m.Service+"-tcp", twomesh.HostPort(m.IP, m.Upstreams.TCP))
	return err
}

// bindSoon starts a server on a port the picker has just released, trying
// again for a moment while it is still in use: a process forked at that
// moment (by another demo in the same process, as the side-by-side test
// runs them) holds a copy of the released listener until it execs, and 5
// runs in 60 of that test failed on it.
func bindSoon(start func(name, addr string) (*upstream.Server, error), name, addr string) (*upstream.Server, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		s, err := start(name, addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(10 * time.Millisecond)
	}
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
