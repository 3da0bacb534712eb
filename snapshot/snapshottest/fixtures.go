package snapshottest

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
)

// Settings are mesh-a's, with one peer, mesh-b, and its gateways on
// loopback.
func Settings() snapshot.Settings {
	return snapshot.Settings{
		TrustDomain: "mesh-a.example",
		Peers:       []model.Peer{{Name: "mesh-b", TrustDomain: "mesh-b.example"}},
		Gateways: snapshot.Gateways{
			Egress:  snapshot.Address{Address: "127.0.0.1"},
			Ingress: snapshot.SocketAddress{Address: "127.0.0.1", Port: 15444},
		},
	}
}

// Secrets are real certificates for Settings: mesh-a's gateway SVIDs and
// the bundles of mesh-a and mesh-b.
func Secrets(t testing.TB) snapshot.Secrets {
	t.Helper()
	s := snapshot.Secrets{SVIDs: map[model.Role]snapshot.SVID{}, Bundles: map[string]string{}}
	for _, td := range []string{"mesh-a.example", "mesh-b.example"} {
		ca, err := certs.NewTestCA(spiffeid.RequireTrustDomainFromString(td))
		require.NoError(t, err)
		s.Bundles[td] = string(ca.CertPEM())
		if td != "mesh-a.example" {
			continue
		}
		for _, role := range model.GatewayRoles {
			chain, key, err := ca.Issue(spiffeid.RequireFromPath(ca.TrustDomain(), "/meshfed/gateway/"+string(role)), time.Hour)
			require.NoError(t, err)
			s.SVIDs[role] = snapshot.SVID{CertChain: string(chain), PrivateKey: string(key)}
		}
	}
	return s
}

// Service is mesh-b's service name with one instance, p, of proto on
// port, at the ingress addresses addrs.
func Service(name string, proto model.Protocol, port uint32, addrs ...string) model.Service {
	s := model.Service{
		Name: name, FQDN: name + ".mesh-b.example",
		SANs:      []string{"spiffe://mesh-b.example/meshfed/gateway/ingress"},
		Instances: []model.Instance{{ID: "p", Protocol: proto, Port: port, SNI: model.DefaultSNI(port, name+".mesh-b.example")}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, model.Endpoint{Address: a, Port: 15444})
	}
	return s
}

// Import is svc imported from mesh-b under its own name.
func Import(svc model.Service) model.Import {
	return model.Import{Peer: "mesh-b", ResourceID: svc.Name, LocalFQDN: svc.FQDN, Service: svc}
}
