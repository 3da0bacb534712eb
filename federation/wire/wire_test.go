package wire_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
)

func requireProto(t *testing.T, want, got *typespb.FederatedService) {
	t.Helper()
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Fatalf("FederatedService (-want +got):\n%s", d)
	}
}

// What this agent publishes carries every field the proto marks REQUIRED:
// sans, a label on each endpoint, a selector and an id on each instance.
func TestAdvertisePublishesRequiredFields(t *testing.T) {
	e := model.Export{
		Name: "payments", FQDN: "payments.mesh-b.example", Mode: model.Terminate,
		Ports: []model.ExportPort{
			{Name: "web", Port: 8080, Protocol: model.HTTP, SNI: model.DefaultSNI(8080, "payments.mesh-b.example")},
			{Port: 5432, Protocol: model.TCP, SNI: "db.payments.mesh-b.example"},
		},
	}
	in := wire.Ingress{
		Endpoints: []model.Endpoint{{Address: "192.0.2.10", Port: 15444}, {Address: "ingress.mesh-b.example", Port: 443}},
		SANs:      []string{"spiffe://mesh-b.example/meshfed/gateway/ingress"},
	}
	got := wire.FromModel(wire.Advertise(e, in))
	requireProto(t, &typespb.FederatedService{
		Name: "payments", Fqdn: "payments.mesh-b.example",
		Sans: []string{"spiffe://mesh-b.example/meshfed/gateway/ingress"},
		Endpoints: []*typespb.FederatedService_Endpoint{
			{Address: "192.0.2.10", Port: 15444, Labels: []string{"ingress"}},
			{Address: "ingress.mesh-b.example", Port: 443, Labels: []string{"ingress"}},
		},
		Instances: []*typespb.FederatedService_Instance{
			{Id: "tcp-5432", Protocol: "TCP", EndpointSelector: []string{"ingress"},
				Metadata: map[string]string{"SNI": "db.payments.mesh-b.example", "PORT": "5432"}},
			{Id: "web", Protocol: "HTTP", EndpointSelector: []string{"ingress"},
				Metadata: map[string]string{"SNI": "outbound_.8080_._.payments.mesh-b.example", "PORT": "8080"}},
		},
	}, got)
	if in.Endpoints[0].Labels != nil {
		t.Fatal("Advertise changed the ingress it was given")
	}
}

// A passthrough export's backend terminates the consumers' mTLS: peers are
// told to verify its SPIFFE IDs, not the ingress gateway's.
func TestAdvertisePassthroughNamesTheBackend(t *testing.T) {
	e := model.Export{
		Name: "ledger", FQDN: "ledger.mesh-b.example", Mode: model.Passthrough,
		BackendIDs: []string{"spiffe://mesh-b.example/ns/db/sa/ledger"},
		Ports:      []model.ExportPort{{Name: "pg", Port: 5432, Protocol: model.TLS}},
	}
	in := wire.Ingress{SANs: []string{"spiffe://mesh-b.example/meshfed/gateway/ingress"}}
	require.Equal(t, []string{"spiffe://mesh-b.example/ns/db/sa/ledger"}, wire.Advertise(e, in).SANs)
}
