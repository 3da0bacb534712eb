package validate

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/model"
)

func testPolicy() Policy {
	return Policy{
		TrustDomain:     spiffeid.RequireTrustDomainFromString("mesh-b.example"),
		SANTrustDomains: []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("gw.example")},
		DeniedCIDRs:     []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:dead::/32")},
	}
}

// validService is a service that passes testPolicy, exercising every
// normalisation Service does.
func validService() *typespb.FederatedService {
	return &typespb.FederatedService{
		Name:        "payments",
		Description: "card payments",
		Tags:        []string{"tier1", "pci"},
		Labels:      map[string]string{"team": "pay", "env": "prod"},
		Fqdn:        "payments.mesh-b.example",
		Endpoints: []*typespb.FederatedService_Endpoint{
			{Address: "203.0.113.10", Port: 15443, Labels: []string{"zone-a"}, Description: "ingress a"},
			{Address: "::ffff:203.0.113.11", Port: 15443},
			{Address: "Ingress.Mesh-B.Example", Port: 443, Labels: []string{"zone-b"}},
			{Address: "2001:DB8::1", Port: 443},
		},
		Sans: []string{"spiffe://mesh-b.example/ns/istio-system/sa/ingress", "spiffe://gw.example/gw"},
		Instances: []*typespb.FederatedService_Instance{
			{Id: "http", Protocol: "http", Metadata: map[string]string{"sni": "outbound_.8080_._.payments.mesh-b.example", "Port": "8080", "owner": "x"}},
			{Id: "grpc", Protocol: "GRPC", Metadata: map[string]string{"HOSTNAME": "Payments.Mesh-B.Example"}, EndpointSelector: []string{"zone-a"}, Description: "rpc"},
			{Id: "db", Protocol: "Tcp"},
		},
	}
}

func wantService() model.Service {
	return model.Service{
		Name:        "payments",
		FQDN:        "payments.mesh-b.example",
		Description: "card payments",
		Tags:        []string{"tier1", "pci"},
		Labels:      map[string]string{"team": "pay", "env": "prod"},
		Endpoints: []model.Endpoint{
			{Address: "203.0.113.10", Port: 15443, Labels: []string{"zone-a"}},
			{Address: "203.0.113.11", Port: 15443},
			{Address: "ingress.mesh-b.example", Port: 443, Labels: []string{"zone-b"}},
			{Address: "2001:db8::1", Port: 443},
		},
		SANs: []string{"spiffe://mesh-b.example/ns/istio-system/sa/ingress", "spiffe://gw.example/gw"},
		Instances: []model.Instance{
			{ID: "http", Protocol: model.HTTP, SNI: "outbound_.8080_._.payments.mesh-b.example", Port: 8080},
			{ID: "grpc", Protocol: model.GRPC, Hostname: "payments.mesh-b.example", Selector: []string{"zone-a"}, SNI: "outbound_.0_._.payments.mesh-b.example"},
			{ID: "db", Protocol: model.TCP, SNI: "outbound_.0_._.payments.mesh-b.example"},
		},
	}
}

// toProto is the FederatedService that carries s. It is written here rather
// than borrowed from package wire so that the idempotence check does not
// depend on the code it would be checking.
func toProto(s model.Service) *typespb.FederatedService {
	fs := &typespb.FederatedService{
		Name: s.Name, Description: s.Description, Tags: s.Tags, Labels: s.Labels, Fqdn: s.FQDN, Sans: s.SANs,
	}
	for _, e := range s.Endpoints {
		fs.Endpoints = append(fs.Endpoints, &typespb.FederatedService_Endpoint{Address: e.Address, Port: e.Port, Labels: e.Labels})
	}
	for _, in := range s.Instances {
		md := map[string]string{}
		if in.SNI != "" {
			md["SNI"] = in.SNI
		}
		if in.Hostname != "" {
			md["HOSTNAME"] = in.Hostname
		}
		if in.Port != 0 {
			md["PORT"] = strconv.FormatUint(uint64(in.Port), 10)
		}
		fs.Instances = append(fs.Instances, &typespb.FederatedService_Instance{Id: in.ID, Protocol: string(in.Protocol), Metadata: md, EndpointSelector: in.Selector})
	}
	return fs
}

func upsert(t testing.TB, fs *typespb.FederatedService) *discoverypb.StreamResponse {
	t.Helper()
	a, err := anypb.New(fs)
	require.NoError(t, err)
	return &discoverypb.StreamResponse{
		Nonce: "1", ResourceUrl: typeURL, ResourceId: "payments", Resource: a,
		Operation: discoverypb.StreamResponse_UPSERT,
	}
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	require.NoError(t, err)
	return b
}
