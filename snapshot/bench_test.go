package snapshot

import (
	"fmt"
	"testing"

	"github.com/meshfed/meshfed/model"
)

// benchInput is n imported services from 10 peers, mixed like a real
// catalog: most HTTP, some GRPC, some TCP with a dedicated port.
func benchInput(n int) *Input {
	in := &Input{
		Settings: Settings{
			TrustDomain: "mesh-a.example",
			Gateways: Gateways{
				Egress:  Address{Address: "0.0.0.0"},
				Ingress: SocketAddress{Address: "0.0.0.0", Port: 15443},
			},
		},
		Secrets: Secrets{
			SVIDs:   map[model.Role]SVID{model.Egress: {CertChain: "C", PrivateKey: "K"}, model.Ingress: {CertChain: "C", PrivateKey: "K"}},
			Bundles: map[string]string{},
		},
		EgressPorts: map[string]uint32{},
	}
	for p := range 10 {
		td := fmt.Sprintf("mesh-%d.example", p)
		in.Peers = append(in.Peers, model.Peer{Name: fmt.Sprintf("mesh-%d", p), TrustDomain: td})
		in.Secrets.Bundles[td] = "BUNDLE"
	}
	protos := []model.Protocol{model.HTTP, model.HTTP, model.HTTP, model.GRPC, model.TCP}
	for i := range n {
		peer := in.Peers[i%len(in.Peers)]
		fqdn := fmt.Sprintf("svc-%d.%s", i, peer.TrustDomain)
		imp := model.Import{
			Peer: peer.Name, ResourceID: fmt.Sprintf("svc-%d", i), LocalFQDN: fqdn,
			Service: model.Service{
				Name: fmt.Sprintf("svc-%d", i), FQDN: fqdn,
				SANs:      []string{"spiffe://" + peer.TrustDomain + "/ns/federation/sa/ingress"},
				Endpoints: []model.Endpoint{{Address: "203.0.113.10", Port: 15443}, {Address: "203.0.113.11", Port: 15443}},
				Instances: []model.Instance{{ID: "main", Protocol: protos[i%len(protos)], Port: 8080}},
			},
		}
		in.Imports = append(in.Imports, imp)
	}
	for i, k := range EgressPortKeys(in.Imports) {
		in.EgressPorts[k] = 20000 + uint32(i)
	}
	return in
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			in := benchInput(n)
			b.ReportAllocs()
			for b.Loop() {
				Build(in)
			}
		})
	}
}

func BenchmarkEgressResources(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			in := benchInput(n)
			imp := in.Imports[n/2]
			b.ReportAllocs()
			for b.Loop() {
				egressResources(&view{Settings: in.Settings, Secrets: in.Secrets}, imp, in.EgressPorts)
			}
		})
	}
}
