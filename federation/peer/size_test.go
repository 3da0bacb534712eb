package peer_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/federation/wire"
)

// largestService is a FederatedService of a peer of trust domain td with
// every field at the limit validation allows (validate.DefaultLimits):
// the largest a peer can publish.
func largestService(td string) *typespb.FederatedService {
	l := validate.DefaultLimits()
	fill := func(i, n int, c string) string { return fmt.Sprintf("%03d", i) + strings.Repeat(c, n-3) }
	// The default SNI, outbound_.<port>_._.<fqdn>, must stay within 255
	// bytes.
	fqdn := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 40)
	fs := &typespb.FederatedService{
		Name: fill(0, l.NameLen, "n"), Fqdn: fqdn, Description: fill(0, l.DescriptionLen, "d"),
		Labels: map[string]string{},
	}
	for i := range l.Tags {
		fs.Tags = append(fs.Tags, fill(i, l.ItemLen, "t"))
	}
	for i := range l.Labels {
		fs.Labels[fill(i, l.ItemLen, "k")] = fill(i, l.ValueLen, "v")
	}
	prefix := "spiffe://" + td + "/"
	for i := range l.SANs {
		fs.Sans = append(fs.Sans, prefix+fill(i, l.SANLen-len(prefix), "s"))
	}
	for i := range l.Endpoints {
		e := &typespb.FederatedService_Endpoint{
			Address: fill(i, 63, "e") + "." + strings.Repeat("f", 63) + "." + strings.Repeat("g", 63) + "." + strings.Repeat("h", 61),
			Port:    65535, Description: fill(i, l.DescriptionLen, "x"),
		}
		for j := range l.EndpointLabels {
			e.Labels = append(e.Labels, fill(j, l.ItemLen, "l"))
		}
		fs.Endpoints = append(fs.Endpoints, e)
	}
	for i := range l.Instances {
		in := &typespb.FederatedService_Instance{Id: fill(i, l.NameLen, "i"), Protocol: "HTTPS", Description: fill(i, l.DescriptionLen, "x"), Metadata: map[string]string{}}
		for j := range l.Metadata {
			in.Metadata[fill(j, l.ItemLen, "m")] = fill(j, l.ValueLen, "v")
		}
		for j := range l.Selector {
			in.EndpointSelector = append(in.EndpointSelector, fill(j, l.ItemLen, "l"))
		}
		fs.Instances = append(fs.Instances, in)
	}
	return fs
}

// frameOf is the response that publishes fs, with a nonce of nonceLen
// bytes.
func frameOf(t *testing.T, fs *typespb.FederatedService, nonceLen int) *discoverypb.BidirectionalStream {
	b, err := proto.Marshal(fs)
	require.NoError(t, err)
	return &discoverypb.BidirectionalStream{Response: &discoverypb.StreamResponse{
		Nonce: strings.Repeat("n", nonceLen), ResourceUrl: wire.TypeURL, ResourceId: fs.GetFqdn(),
		Resource: &anypb.Any{TypeUrl: wire.TypeURL, Value: b}, Operation: discoverypb.StreamResponse_UPSERT,
	}}
}

// oversized is a frame of exactly peer.MaxMessageBytes + 1 bytes.
func oversized(t *testing.T, fs *typespb.FederatedService) *discoverypb.BidirectionalStream {
	m := frameOf(t, fs, 1)
	m = frameOf(t, fs, peer.MaxMessageBytes+1-proto.Size(m)+1)
	for d := proto.Size(m) - (peer.MaxMessageBytes + 1); d != 0; d = proto.Size(m) - (peer.MaxMessageBytes + 1) {
		m.Response.Nonce = m.Response.Nonce[:len(m.Response.Nonce)-d]
	}
	return m
}

// The largest response validation accepts, some 5.8 MB and over gRPC's
// 4 MiB default, is taken both ways: from a peer that dials this agent
// and from a peer this agent dials. One byte over MaxMessageBytes ends
// the stream with ResourceExhausted, either way.
func TestLargestValidResponseIsTakenBothWays(t *testing.T) {
	p := newPKI(t, "mesh-a", "mesh-b")
	largest := largestService(p.td("mesh-a"))
	frame := frameOf(t, largest, 64)
	size := proto.Size(frame)
	t.Logf("the largest valid response is %d bytes", size)
	require.Greater(t, size, 4<<20, "gRPC's default would refuse it")
	require.LessOrEqual(t, size, peer.MaxMessageBytes)
	_, _, err := validate.Response(frame.GetResponse(), policy(p.td("mesh-a")))
	require.NoError(t, err)

	t.Run("from a peer that dials", func(t *testing.T) {
		b := newAgent(t, "mesh-b", p, []peer.Spec{spec("mesh-a", p.td("mesh-a"), "")}, nil)
		x := dialSpecPeer(t, p, "mesh-a", b.addr)
		require.NoError(t, x.stream.Send(frame))
		// The ACK follows the store's commit of 5.8 MB: the wait is
		// only a bound on a hung test, however slow the disk.
		select {
		case m := <-x.frames:
			require.Equal(t, frame.GetResponse().GetNonce(), m.GetRequest().GetResponseNonce())
			require.Equal(t, int32(codes.OK), m.GetRequest().GetStatus().GetCode(), "%v", m.GetRequest().GetStatus())
		case err := <-x.err:
			t.Fatalf("stream ended: %v", err)
		case <-time.After(5 * time.Minute):
			t.Fatal("no answer")
		}
		require.Equal(t, []string{largest.GetFqdn()}, b.importedIDs("mesh-a"))

		over := oversized(t, largest)
		require.Equal(t, peer.MaxMessageBytes+1, proto.Size(over))
		require.NoError(t, x.stream.Send(over))
		select {
		case err = <-x.err:
		case <-time.After(5 * time.Minute):
			t.Fatal("the stream did not end")
		}
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
		require.ErrorContains(t, err, fmt.Sprintf("grpc: received message larger than max (%d vs. %d)", peer.MaxMessageBytes+1, peer.MaxMessageBytes))
	})

	t.Run("from a peer this agent dials", func(t *testing.T) {
		publish := make(chan *discoverypb.BidirectionalStream, 2)
		addr := serveRawHamlet(t, p, "mesh-b", publish)
		a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), addr)}, nil)
		big := largestService(p.td("mesh-b"))
		publish <- frameOf(t, big, 64)
		require.Eventually(t, func() bool { return len(a.importedIDs("mesh-b")) == 1 }, 5*time.Minute, 10*time.Millisecond)
		require.Equal(t, []string{big.GetFqdn()}, a.importedIDs("mesh-b"))

		publish <- oversized(t, big)
		require.Eventually(t, func() bool {
			return strings.Contains(a.status("mesh-b").LastError, fmt.Sprintf("grpc: received message larger than max (%d vs. %d)", peer.MaxMessageBytes+1, peer.MaxMessageBytes))
		}, 5*time.Minute, 10*time.Millisecond)
		assert.Contains(t, a.status("mesh-b").LastError, "code = ResourceExhausted")
	})
}

// serveRawHamlet is a Hamlet server of mesh that sends what publish
// carries on every stream and reads what the client sends; it returns its
// address.
func serveRawHamlet(t *testing.T, p *pki, mesh string, publish <-chan *discoverypb.BidirectionalStream) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.tls(t, mesh).ServerConfig(tlsconfig.AuthorizeAny()))))
	discoverypb.RegisterDiscoveryServiceServer(srv, &rawHamlet{publish: publish})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

type rawHamlet struct {
	discoverypb.UnimplementedDiscoveryServiceServer
	publish <-chan *discoverypb.BidirectionalStream
}

func (h *rawHamlet) EstablishStream(s discoverypb.DiscoveryService_EstablishStreamServer) error {
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				errc <- err
				return
			}
		}
	}()
	for {
		select {
		case m := <-h.publish:
			if err := s.Send(m); err != nil {
				return err
			}
		case err := <-errc:
			return err
		}
	}
}
