// Package snapshottest holds what tests of the gateway translation share:
// inputs as golden files write them, a rendering of resources to compare
// with golden files, and random valid inputs for fuzzing. Both the
// reference translation (snapshot.Build) and the production path (the
// runner's incremental translator) are checked against the same files.
package snapshottest

import (
	"fmt"
	"strconv"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
)

// source reads choices from fuzz bytes; past the end every choice is 0.
type source struct {
	b []byte
	i int
}

func (s *source) next() int {
	if s.i >= len(s.b) {
		return 0
	}
	c := s.b[s.i]
	s.i++
	return int(c)
}

func (s *source) intn(n int) int { return s.next() % n }

func (s *source) bool() bool { return s.intn(2) == 1 }

// word is 0 to 4 bytes of an alphabet full of what names must escape.
func (s *source) word() string {
	const alphabet = "ab-._/%:A\xff~ "
	b := make([]byte, s.intn(5))
	for i := range b {
		b[i] = alphabet[s.intn(len(alphabet))]
	}
	return string(b)
}

func (s *source) host(i int) string {
	if s.intn(4) == 0 {
		return fmt.Sprintf("gw%d-%d.example", i, s.intn(3))
	}
	return fmt.Sprintf("10.%d.%d.%d", i%256, s.next(), s.next())
}

// RandomInput is a valid catalog drawn from data: names as hostile as a peer
// may send (they are escaped), everything else as validation leaves it.
// Uniqueness the catalog guarantees (peer names, (peer, resource id), local
// fqdn, instance ids, export names, port names and numbers) is kept by
// suffixing an index.
func RandomInput(data []byte) *snapshot.Input {
	s := &source{b: data}
	in := &snapshot.Input{
		Settings: snapshot.Settings{
			TrustDomain: "mesh-a.example",
			Gateways: snapshot.Gateways{
				Egress:  snapshot.Address{Address: "0.0.0.0"},
				Ingress: snapshot.SocketAddress{Address: "0.0.0.0", Port: 15443},
			},
		},
		Secrets: snapshot.Secrets{
			SVIDs: map[model.Role]snapshot.SVID{
				model.Egress:  {CertChain: "EGRESS", PrivateKey: "KEY"},
				model.Ingress: {CertChain: "INGRESS", PrivateKey: "KEY"},
			},
			Bundles: map[string]string{},
		},
	}
	for i := range 1 + s.intn(3) {
		p := model.Peer{Name: s.word() + strconv.Itoa(i), TrustDomain: fmt.Sprintf("td%d.example", s.intn(2)+2*i)}
		if s.bool() {
			p.SPIFFEIDs = []string{"spiffe://" + p.TrustDomain + "/gw", "spiffe://" + p.TrustDomain + "/gw"}
		}
		in.Peers = append(in.Peers, p)
		in.Secrets.Bundles[p.TrustDomain] = "BUNDLE " + p.TrustDomain
	}
	for i := range s.intn(7) {
		peer := in.Peers[s.intn(len(in.Peers))]
		svc := s.service(i, peer)
		local := svc.FQDN
		if s.bool() {
			local = fmt.Sprintf("Alias%d.local", i)
		}
		in.Imports = append(in.Imports, model.Import{Peer: peer.Name, ResourceID: s.word() + strconv.Itoa(i), LocalFQDN: local, Service: svc})
	}
	in.EgressPorts = map[string]uint32{}
	for i, k := range snapshot.EgressPortKeys(in.Imports) {
		if s.intn(8) != 0 { // some not allocated yet
			in.EgressPorts[k] = 20000 + uint32(i)
		}
	}
	for i := range s.intn(5) {
		exp := s.export(i, in.Peers)
		in.Exports = append(in.Exports, exp)
	}
	return WithEdgeDefaults(in)
}

var labels = []string{"a", "b", "c"}

// service is the i-th imported service, from peer.
func (s *source) service(i int, peer model.Peer) model.Service {
	svc := model.Service{
		Name: "svc",
		FQDN: fmt.Sprintf("svc%d.%s", i, peer.TrustDomain),
	}
	if s.bool() {
		svc.SANs = []string{"spiffe://" + peer.TrustDomain + "/gw"}
	}
	for range 1 + s.intn(3) {
		e := model.Endpoint{Address: s.host(i), Port: uint32(1 + (s.next()*256+s.next())%65535)}
		if s.bool() {
			e.Labels = []string{labels[s.intn(3)]}
		}
		svc.Endpoints = append(svc.Endpoints, e)
	}
	for j := range 1 + s.intn(4) {
		inst := model.Instance{
			ID:       s.word() + strconv.Itoa(j),
			Protocol: model.Protocols[s.intn(len(model.Protocols))],
			Port:     uint32(s.intn(3) * 8080),
		}
		if s.bool() {
			inst.SNI = fmt.Sprintf("sni%d.%s", j, svc.FQDN)
		}
		if s.bool() {
			inst.Selector = []string{labels[s.intn(3)], "z"}
		}
		if s.bool() {
			inst.Hostname = "h." + svc.FQDN
		}
		svc.Instances = append(svc.Instances, inst)
	}
	return svc
}

// export is the i-th exported service, for some of peers.
func (s *source) export(i int, peers []model.Peer) model.Export {
	exp := model.Export{
		Name: s.word() + strconv.Itoa(i),
		FQDN: fmt.Sprintf("exp%d.mesh-a.example", i),
		Mode: []model.IngressMode{"", model.Terminate, model.Passthrough}[s.intn(3)],
	}
	for _, p := range peers {
		if s.bool() {
			exp.Consumers = append(exp.Consumers, p.Name)
		}
	}
	if s.bool() {
		exp.Consumers = append(exp.Consumers, "unknown")
	}
	for j := range 1 + s.intn(3) {
		p := model.ExportPort{
			Name:     s.word() + strconv.Itoa(j),
			Port:     uint32(8000 + j),
			Protocol: model.Protocols[s.intn(len(model.Protocols))],
		}
		if s.bool() {
			p.SNI = fmt.Sprintf("sni-%d-%d.mesh-a.example", i, j)
		}
		for range s.intn(3) {
			p.Endpoints = append(p.Endpoints, model.LocalEndpoint{Address: s.host(100 + j), Port: uint32(1 + s.next())})
		}
		exp.Ports = append(exp.Ports, p)
	}
	return exp
}
