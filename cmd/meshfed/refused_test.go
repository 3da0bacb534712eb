package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/hamlet/typespb"
)

const serviceURL = "type.googleapis.com/federation.types.v1alpha2.FederatedService"

// hamletStream opens a Hamlet stream to a as the holder of the SVID in
// dir/name.pem, trusting a's bundle.
func hamletStream(t *testing.T, a *agent.Agent, dir, name string) (discoverypb.DiscoveryService_EstablishStreamClient, error) {
	t.Helper()
	svid, err := x509svid.Load(filepath.Join(dir, "b", name+".pem"), filepath.Join(dir, "b", name+"-key.pem"))
	require.NoError(t, err)
	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString("mesh-a.example"), filepath.Join(dir, "certs", "bundle.pem"))
	require.NoError(t, err)
	conn, err := grpc.NewClient(a.FederationAddr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeAny()))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	stream, err := discoverypb.NewDiscoveryServiceClient(conn).EstablishStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&discoverypb.BidirectionalStream{Request: &discoverypb.StreamRequest{ResourceUrl: serviceURL}}); err != nil {
		_, err = stream.Recv()
		return nil, err
	}
	return stream, nil
}

// The status shows a refused handshake (a workload of mesh-b posing as its
// agent) and the NACKs this agent sent for mesh-b's services, in the table
// and the API; catalog imports shows them too.
func TestStatusShowsRefusedConnectionsAndNacksSent(t *testing.T) {
	a, dir := startAgent(t)
	url := "http://" + a.AdminAddr().String()
	_, err := run(t, "certs", "issue", "--ca", filepath.Join(dir, "b"), "--spiffe-id", "spiffe://mesh-b.example/ns/default/sa/random-workload",
		"--out", filepath.Join(dir, "b"), "--name", "workload")
	require.NoError(t, err)

	stream, err := hamletStream(t, a, dir, "workload")
	if err == nil {
		_, err = stream.Recv()
	}
	require.Error(t, err)
	require.Equal(t, codes.Unavailable, status.Code(err))

	// mesh-b's agent publishes a service this agent must refuse.
	stream, err = hamletStream(t, a, dir, "agent")
	require.NoError(t, err)
	b, err := proto.Marshal(&typespb.FederatedService{Name: "ledger", Fqdn: "ledger.mesh-b.example",
		Endpoints: []*typespb.FederatedService_Endpoint{{Address: "192.0.2.7", Port: 0}},
		Instances: []*typespb.FederatedService_Instance{{Id: "web", Protocol: "HTTP"}}})
	require.NoError(t, err)
	require.NoError(t, stream.Send(&discoverypb.BidirectionalStream{Response: &discoverypb.StreamResponse{
		Nonce: "1", ResourceUrl: serviceURL, ResourceId: "ledger", Operation: discoverypb.StreamResponse_UPSERT,
		Resource: &anypb.Any{TypeUrl: serviceURL, Value: b}}}))
	for {
		m, err := stream.Recv()
		require.NoError(t, err)
		if m.GetRequest().GetResponseNonce() == "1" {
			require.Equal(t, int32(codes.InvalidArgument), m.GetRequest().GetStatus().GetCode())
			break
		}
	}

	out, err := run(t, "status", "--agent", url)
	require.NoError(t, err)
	t.Logf("meshfed status:\n%s", out)
	require.Regexp(t, `REFUSED FROM +REMOTE +IDENTITY PRESENTED +REASON +AT\n`+
		`mesh-b +127\.0\.0\.1:\d+ +spiffe://mesh-b\.example/ns/default/sa/random-workload +`+
		`spiffe://mesh-b\.example/ns/default/sa/random-workload is not an agent identity of peer "mesh-b" \(spiffeIds: spiffe://mesh-b\.example/meshfed/agent\) +\S+ ago\n`, out)
	require.Regexp(t, `PEER +REJECTED SERVICE +NACK SENT +REASON +AT\n`+
		`mesh-b +ledger +InvalidArgument +endpoints\[0\]\.port: 0 is out of range 1-65535 +\S+ ago\n`, out)
	require.Regexp(t, `mesh-b +mesh-b\.example +connected +\S+ ago +0 +1 +none \(specification\) +\S+ ago +\S+ ago +-\n`, out)

	out, err = run(t, "status", "--agent", url, "-o", "json")
	require.NoError(t, err)
	var s agent.Status
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	require.Len(t, s.Peers, 1)
	require.Len(t, s.Peers[0].Refused, 1)
	require.Equal(t, "spiffe://mesh-b.example/ns/default/sa/random-workload", s.Peers[0].Refused[0].Identity)
	require.Len(t, s.Peers[0].Rejected, 1)
	rj := s.Peers[0].Rejected[0]
	require.Equal(t, agent.Rejection{ResourceID: "ledger", Code: "InvalidArgument", Message: "endpoints[0].port: 0 is out of range 1-65535", At: rj.At}, rj)

	out, err = run(t, "catalog", "imports", "--agent", url)
	require.NoError(t, err)
	require.Regexp(t, `mesh-b +ledger +InvalidArgument +endpoints\[0\]\.port: 0 is out of range 1-65535 +\S+ ago\n`, out)
}
