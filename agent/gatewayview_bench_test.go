package agent

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/cache"
)

// BenchmarkConfigDump measures the config dump of an egress gateway that
// serves n imported HTTP services, marshaled as the API answers it.
// go test ./agent -run XXX -bench ConfigDump -benchtime 3x
func BenchmarkConfigDump(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			in := &snapshot.Input{
				Settings: snapshot.Settings{
					TrustDomain: "mesh-a.example",
					Gateways:    snapshot.Gateways{Egress: snapshot.Address{Address: "0.0.0.0"}, Ingress: snapshot.SocketAddress{Address: "0.0.0.0", Port: 15443}},
					Peers:       []model.Peer{{Name: "mesh-b", TrustDomain: "mesh-b.example"}},
				},
				Secrets: snapshot.Secrets{
					SVIDs:   map[model.Role]snapshot.SVID{model.Egress: {CertChain: "C", PrivateKey: "K"}, model.Ingress: {CertChain: "C", PrivateKey: "K"}},
					Bundles: map[string]string{"mesh-b.example": "BUNDLE"},
				},
			}
			for i := range n {
				fqdn := fmt.Sprintf("svc-%d.mesh-b.example", i)
				in.Imports = append(in.Imports, model.Import{Peer: "mesh-b", ResourceID: fmt.Sprintf("svc-%d", i), LocalFQDN: fqdn, Service: model.Service{
					Name: fmt.Sprintf("svc-%d", i), FQDN: fqdn, Endpoints: []model.Endpoint{{Address: "203.0.113.10", Port: 15443}},
					Instances: []model.Instance{{ID: "http", Protocol: model.HTTP, Port: 8080}},
				}})
			}
			a := &Agent{Cache: cache.New(nil, nil)}
			var changes []cache.Change
			for _, typ := range snapshot.Types {
				for _, r := range snapshot.Build(in).ByRole[model.Egress][typ] {
					changes = append(changes, cache.Change{TypeURL: typ, Name: snapshot.Name(r), Resource: r})
				}
			}
			require.NoError(b, a.Cache.Apply(model.Egress, changes))
			var size int
			for b.Loop() {
				dump, err := a.configDump(model.Egress, snapshot.Types, true, false)
				require.NoError(b, err)
				body, err := json.MarshalIndent(protoJSON{dump}, "", "  ")
				require.NoError(b, err)
				size = len(body)
			}
			b.ReportMetric(float64(size)/(1<<20), "MiB")
		})
	}
}
