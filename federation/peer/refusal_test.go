package peer_test

import (
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/peer"
)

// Each refusal an acceptor can cure with a reload: the dialer, refused on
// the connection it opened before the reload, says which refusal it got
// and keeps retrying; the reload that undoes it lets the next retry in,
// without restarting either side.
func TestRefusalsCuredOnTheAcceptingSide(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(s peer.Spec) []peer.Spec
		kind   peer.RefusalKind
		says   string
	}{
		{"removed", func(peer.Spec) []peer.Spec { return nil }, peer.NotAPeer,
			`code = PermissionDenied desc = spiffe://mesh-a.example/meshfed/agent is not a peer of this agent: no peer of trust domain "mesh-a.example" is in its configuration (not added yet, or removed)`},
		{"other spiffe ids", func(s peer.Spec) []peer.Spec {
			s.SPIFFEIDs = []string{"spiffe://mesh-a.example/another/agent"}
			return []peer.Spec{s}
		}, peer.IdentityNotAccepted,
			`code = PermissionDenied desc = spiffe://mesh-a.example/meshfed/agent is not an agent identity of peer "mesh-a" (spiffeIds: spiffe://mesh-a.example/another/agent)`},
		{"dials too", func(s peer.Spec) []peer.Spec {
			s.Dial = "127.0.0.1:1"
			return []peer.Spec{s}
		}, peer.DialsToo, `code = PermissionDenied desc = peer "mesh-a" is dialed by this agent, not accepted`},
		{"another token", func(s peer.Spec) []peer.Spec {
			s.Context, s.RequireContext = "s3cret", true
			return []peer.Spec{s}
		}, peer.ContextRefused, `code = Unauthenticated desc = context: the opening request does not carry this peer's token`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t, "mesh-a", "mesh-b")
			accepted := spec("mesh-a", p.td("mesh-a"), "")
			b := newAgent(t, "mesh-b", p, []peer.Spec{accepted}, nil)
			b.export([]string{"payments"}, "mesh-a")
			a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), b.addr)}, nil)
			a.eventuallyImports("mesh-b", "payments")

			require.NoError(t, b.manager.SetPeers(tc.change(accepted)))
			require.Eventually(t, func() bool {
				st := a.status("mesh-b")
				return st.State == peer.Refused && st.Reconnects >= 3
			}, 10*time.Second, time.Millisecond, "mesh-a keeps retrying")
			st := a.status("mesh-b")
			require.Equal(t, tc.kind, st.Refusal.Kind)
			require.False(t, st.Refusal.Final)
			require.Contains(t, st.Refusal.Message, tc.says)
			require.Equal(t, st.Refusal.Message, st.LastError)
			require.NotNil(t, st.NextRetry)

			require.NoError(t, b.manager.SetPeers([]peer.Spec{accepted}))
			require.Eventually(t, func() bool {
				st := a.status("mesh-b")
				return st.State == peer.Connected && st.Refusal == nil
			}, 10*time.Second, time.Millisecond, "mesh-a is in again")
			b.eventuallyImports("mesh-a")
			a.eventuallyImports("mesh-b", "payments")
		})
	}
}

// A stream that a reload ends tells the dialer why: removed, or changed;
// never that another stream replaced it.
func TestStreamEndedByAReloadSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(s peer.Spec) []peer.Spec
		says   string
	}{
		{"removed", func(peer.Spec) []peer.Spec { return nil },
			"code = Unavailable desc = peer removed from the configuration of this agent by a reload"},
		{"changed", func(s peer.Spec) []peer.Spec { s.MaxServices = 7; return []peer.Spec{s} },
			"code = Unavailable desc = peer's settings changed in the configuration of this agent by a reload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t, "mesh-a", "mesh-b")
			accepted := spec("mesh-a", p.td("mesh-a"), "")
			b := newAgent(t, "mesh-b", p, []peer.Spec{accepted}, nil)
			b.export([]string{"payments"}, "mesh-a")
			// A long first wait: the error of the ended stream stays in
			// the status until the test has read it.
			a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), b.addr)}, func(c *peer.Config) {
				c.MinBackoff, c.MaxBackoff = time.Minute, time.Minute
			})
			a.eventuallyImports("mesh-b", "payments")
			require.NoError(t, b.manager.SetPeers(tc.change(accepted)))
			require.Eventually(t, func() bool { return a.status("mesh-b").State == peer.Backoff }, 10*time.Second, time.Millisecond)
			require.Contains(t, a.status("mesh-b").LastError, tc.says)
		})
	}
}

// A peer that does not serve Hamlet at its address, or refuses the opening
// request itself, is not retried: no configuration of its own cures that.
// One that refuses without saying why (another implementation) is retried.
func TestRefusalsOfOtherServers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		serve   func(*grpc.Server)
		state   peer.State
		kind    peer.RefusalKind
		retried bool
		says    string
	}{
		{"no Hamlet service", func(*grpc.Server) {}, peer.Failed, peer.Incompatible, false,
			"code = Unimplemented desc = unknown service federation.resourcediscovery.v1alpha2.DiscoveryService"},
		{"opening refused", func(s *grpc.Server) {
			discoverypb.RegisterDiscoveryServiceServer(s, refusingServer{err: status.Error(codes.InvalidArgument, "resource_url: not served here")})
		}, peer.Failed, peer.Incompatible, false, "code = InvalidArgument desc = resource_url: not served here"},
		{"permission denied without a reason", func(s *grpc.Server) {
			discoverypb.RegisterDiscoveryServiceServer(s, refusingServer{err: status.Error(codes.PermissionDenied, "go away")})
		}, peer.Refused, peer.Unexplained, true, "code = PermissionDenied desc = go away"},
		{"unauthenticated without a reason", func(s *grpc.Server) {
			discoverypb.RegisterDiscoveryServiceServer(s, refusingServer{err: status.Error(codes.Unauthenticated, "not federated")})
		}, peer.Refused, peer.Unexplained, true, "code = Unauthenticated desc = not federated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t, "mesh-a", "mesh-b")
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.tls(t, "mesh-b").ServerConfig(tlsconfig.AuthorizeAny()))))
			tc.serve(srv)
			go func() { _ = srv.Serve(lis) }()
			t.Cleanup(srv.Stop)

			a := newAgent(t, "mesh-a", p, []peer.Spec{spec("mesh-b", p.td("mesh-b"), lis.Addr().String())}, nil)
			require.Eventually(t, func() bool {
				st := a.status("mesh-b")
				return st.State == tc.state && (!tc.retried || st.Reconnects >= 3)
			}, 10*time.Second, time.Millisecond)
			st := a.status("mesh-b")
			require.Equal(t, tc.kind, st.Refusal.Kind)
			require.Equal(t, !tc.retried, st.Refusal.Final)
			require.Contains(t, st.Refusal.Message, tc.says)
			if !tc.retried {
				// Longer than the harness's backoff cap: a retry would show.
				time.Sleep(time.Second)
				st = a.status("mesh-b")
				require.Zero(t, st.Reconnects)
				require.Equal(t, peer.Failed, st.State)
			}
		})
	}
}

type refusingServer struct {
	discoverypb.UnimplementedDiscoveryServiceServer
	err error
}

func (s refusingServer) EstablishStream(discoverypb.DiscoveryService_EstablishStreamServer) error {
	return s.err
}
