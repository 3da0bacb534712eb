package xds

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot/cache"
	"github.com/meshfed/meshfed/xds/adsclient"
)

func secretChanges() []cache.Change {
	inline := func(s string) *core.DataSource {
		return &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: s}}
	}
	svid := &tlsv3.Secret{Name: "svid", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline("CERT"), PrivateKey: inline("KEY"),
	}}}
	bundle := &tlsv3.Secret{Name: "bundle", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline("CA")}}}
	return []cache.Change{change(svid, "svid"), change(bundle, "bundle"), change(testCluster("c0", 1), "c0")}
}

// serveOn serves a cache with secrets on lis until the test ends, with
// cfg's TLS, authorization and bounds; its node roles are roles unless cfg
// gives some.
func serveOn(t *testing.T, lis net.Listener, cfg Config) *Server {
	t.Helper()
	if cfg.NodeRole == nil {
		cfg.NodeRole = roles
	}
	c := cache.New(cfg.NodeRole, zaptest.NewLogger(t))
	require.NoError(t, c.Apply(model.Egress, secretChanges()))
	cfg.Cache, cfg.Logger, cfg.Registerer = c, zaptest.NewLogger(t), prometheus.NewRegistry()
	s, err := New(withBounds(cfg))
	require.NoError(t, err)
	servetest.Start(t, nil, func(ctx context.Context) error { return s.Serve(ctx, lis) })
	return s
}

// secretsOf connects a delta gateway with node id and returns the names of
// the secrets it received, or the error that ended its stream.
func secretsOf(t *testing.T, target string, creds credentials.TransportCredentials, node string) ([]string, error) {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer conn.Close()
	c := adsclient.New(adsclient.Options{NodeID: node, Delta: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	updates := make(chan adsclient.Update, 16)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, conn, updates) }()
	for {
		select {
		case u := <-updates:
			if u.TypeURL == resource.SecretType {
				cancel()
				<-done
				return u.Updated, nil
			}
		case err := <-done:
			return nil, err
		}
	}
}

// Over a Unix socket gateways get everything; over plaintext TCP on
// loopback, no secret with a private key.
func TestPlaintextGetsNoPrivateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xds.sock")
	unix, err := Listen("unix://" + path)
	require.NoError(t, err)
	serveOn(t, unix, Config{})
	got, err := secretsOf(t, Target(unix.Addr()), insecure.NewCredentials(), "egress-delta")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"bundle", "svid"}, got)

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, tcp, Config{})
	got, err = secretsOf(t, tcp.Addr().String(), insecure.NewCredentials(), "egress-delta")
	require.NoError(t, err)
	require.Equal(t, []string{"bundle"}, got, "no SVID key over plaintext")
}

func TestPlaintextBeyondLoopbackIsRefused(t *testing.T) {
	lis, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	defer lis.Close()
	s, err := New(withBounds(Config{Cache: cache.New(roles, nil), NodeRole: roles}))
	require.NoError(t, err)
	err = s.Serve(context.Background(), lis)
	require.ErrorIs(t, err, ErrPlaintextBeyondLoopback)
	require.ErrorContains(t, err, "xds: a TCP listener without TLS must be on loopback, not "+lis.Addr().String()+": use a Unix socket or mutual TLS")
}

// Over mutual TLS, a gateway's SPIFFE ID decides which node ids it may use:
// another node id, or an identity that is no gateway's, is refused with
// PermissionDenied before anything is served.
func TestMTLSAuthorizesNodeIDs(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("mesh-a.example")
	ca, err := certs.NewTestCA(td)
	require.NoError(t, err)
	issue := func(path string) *x509svid.SVID {
		svid, err := ca.IssueX509SVID(spiffeid.RequireFromPath(td, path), time.Hour)
		require.NoError(t, err)
		return svid
	}
	agent := issue("/meshfed/agent")
	egress := "/meshfed/gateway/egress"
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, lis, Config{
		TLS: certs.ServerTLSConfig(agent, ca.X509Bundle(), tlsconfig.AuthorizeMemberOf(td)),
		AuthorizeNode: func(id spiffeid.ID, node string) error {
			if id.Path() == egress && node == "egress-delta" {
				return nil
			}
			return status.Error(codes.Unknown, "not this one")
		},
	})
	client := func(path string) credentials.TransportCredentials {
		return credentials.NewTLS(certs.ClientTLSConfig(issue(path), ca.X509Bundle(), tlsconfig.AuthorizeID(agent.ID)))
	}

	got, err := secretsOf(t, lis.Addr().String(), client(egress), "egress-delta")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"bundle", "svid"}, got)

	for _, c := range []struct{ path, node string }{{egress, "egress-sotw"}, {"/ns/default/sa/workload", "egress-delta"}} {
		_, err := secretsOf(t, lis.Addr().String(), client(c.path), c.node)
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%s as %s: %v", c.path, c.node, err)
		require.ErrorContains(t, err, "xds: spiffe://mesh-a.example"+c.path+` may not use node id "`+c.node+`"`)
	}
}
