package xds

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot/cache"
)

const (
	egressNode  = "egress-gateway"
	ingressNode = "ingress-gateway"
)

func gatewayRoles(id string) (model.Role, bool) {
	switch id {
	case egressNode:
		return model.Egress, true
	case ingressNode:
		return model.Ingress, true
	}
	return "", false
}

// roleSecrets are a role's SVID, whose private key names the role, and a
// cluster.
func roleSecrets(role model.Role) []cache.Change {
	inline := func(s string) *core.DataSource {
		return &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: s}}
	}
	name := string(role) + "-svid"
	svid := &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(string(role) + "-CERT"), PrivateKey: inline(string(role) + "-KEY"),
	}}}
	return []cache.Change{change(svid, name), change(testCluster(string(role)+"-cluster", 1), string(role)+"-cluster")}
}

// gatewaysEnv serves an egress and an ingress gateway, each with an SVID
// of its own, on one channel; over mutual TLS each gateway's SPIFFE ID may
// use its own node id only, and the client presents the egress one.
type gatewaysEnv struct {
	target   string
	creds    credentials.TransportCredentials
	server   *Server
	cache    *cache.Cache
	registry *prometheus.Registry
	logs     *observer.ObservedLogs
}

func serveGateways(t *testing.T, channel Channel, cfg Config, before ...func(*Server)) *gatewaysEnv {
	t.Helper()
	c := cache.New(gatewayRoles, zap.NewNop())
	for _, role := range model.GatewayRoles {
		require.NoError(t, c.Apply(role, roleSecrets(role)))
	}
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	cfg.Cache, cfg.NodeRole, cfg.Logger, cfg.Registerer = c, gatewayRoles, zap.New(core), reg
	e := &gatewaysEnv{cache: c, registry: reg, logs: logs, creds: insecure.NewCredentials()}
	var lis net.Listener
	var err error
	switch channel {
	case ChannelUnix:
		lis, err = Listen("unix://" + filepath.Join(t.TempDir(), "xds.sock"))
	case ChannelPlaintext:
		lis, err = net.Listen("tcp", "127.0.0.1:0")
	case ChannelMTLS:
		td := spiffeid.RequireTrustDomainFromString("mesh-a.example")
		ca, caErr := certs.NewTestCA(td)
		require.NoError(t, caErr)
		agent, svidErr := ca.IssueX509SVID(spiffeid.RequireFromPath(td, "/meshfed/agent"), time.Hour)
		require.NoError(t, svidErr)
		egress, svidErr := ca.IssueX509SVID(spiffeid.RequireFromPath(td, "/meshfed/gateway/egress"), time.Hour)
		require.NoError(t, svidErr)
		cfg.TLS = certs.ServerTLSConfig(agent, ca.X509Bundle(), tlsconfig.AuthorizeMemberOf(td))
		cfg.AuthorizeNode = func(id spiffeid.ID, node string) error {
			if node == map[string]string{"/meshfed/gateway/egress": egressNode, "/meshfed/gateway/ingress": ingressNode}[id.Path()] {
				return nil
			}
			return errors.New("not its node")
		}
		e.creds = credentials.NewTLS(certs.ClientTLSConfig(egress, ca.X509Bundle(), tlsconfig.AuthorizeID(agent.ID)))
		lis, err = net.Listen("tcp", "127.0.0.1:0")
	}
	require.NoError(t, err)
	e.target = Target(lis.Addr())
	e.server, err = New(withBounds(cfg))
	require.NoError(t, err)
	for _, f := range before {
		f(e.server)
	}
	servetest.Start(t, nil, func(ctx context.Context) error { return e.server.Serve(ctx, lis) })
	return e
}

func (e *gatewaysEnv) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.target, grpc.WithTransportCredentials(e.creds))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// adsRequest is a request of either kind.
type adsRequest struct {
	node           *core.Node
	typeURL, nonce string
	errorDetail    *rpcstatus.Status
}

// adsStream is either kind of ADS stream, seen as requests and the
// resources of each response.
type adsStream struct {
	send func(adsRequest) error
	recv func() (typeURL, nonce string, resources []*anypb.Any, err error)
}

func openADS(t *testing.T, conn *grpc.ClientConn, delta bool) adsStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	if delta {
		st, err := ads.DeltaAggregatedResources(ctx)
		require.NoError(t, err)
		return adsStream{
			send: func(r adsRequest) error {
				return st.Send(&discovery.DeltaDiscoveryRequest{Node: r.node, TypeUrl: r.typeURL, ResponseNonce: r.nonce, ErrorDetail: r.errorDetail})
			},
			recv: func() (string, string, []*anypb.Any, error) {
				r, err := st.Recv()
				return r.GetTypeUrl(), r.GetNonce(), deltaAnys(r.GetResources()), err
			},
		}
	}
	st, err := ads.StreamAggregatedResources(ctx)
	require.NoError(t, err)
	return adsStream{
		send: func(r adsRequest) error {
			return st.Send(&discovery.DiscoveryRequest{Node: r.node, TypeUrl: r.typeURL, ResponseNonce: r.nonce, ErrorDetail: r.errorDetail})
		},
		recv: func() (string, string, []*anypb.Any, error) {
			r, err := st.Recv()
			return r.GetTypeUrl(), r.GetNonce(), r.GetResources(), err
		},
	}
}

// secretNames are the names of the secrets among resources, and names
// those of every resource.
func secretNames(t *testing.T, resources []*anypb.Any) (secrets, names []string) {
	t.Helper()
	for _, a := range resources {
		m, err := a.UnmarshalNew()
		require.NoError(t, err)
		if s, ok := m.(*tlsv3.Secret); ok {
			secrets = append(secrets, s.GetName())
		}
		if n, ok := m.(interface{ GetName() string }); ok {
			names = append(names, n.GetName())
		}
	}
	return secrets, names
}

// A stream keeps the node id it was authorized with. A gateway that opens
// it as its own node and then names another (the egress SVID asking for
// the ingress gateway's secrets) receives nothing of the other node: its
// stream ends with PermissionDenied, and the log names both ids. So does
// a stream whose first request named no node. Every channel, both kinds of
// stream.
func TestNodeIDCannotChangeMidStream(t *testing.T) {
	for _, channel := range []Channel{ChannelMTLS, ChannelUnix, ChannelPlaintext} {
		for _, kind := range []string{"sotw", "delta"} {
			t.Run(string(channel)+"/"+kind, func(t *testing.T) {
				e := serveGateways(t, channel, Config{})
				conn := e.dial(t)
				st := openADS(t, conn, kind == "delta")

				// The egress gateway as itself: its own cluster.
				require.NoError(t, st.send(adsRequest{node: &core.Node{Id: egressNode}, typeURL: resource.ClusterType}))
				typeURL, nonce, res, err := st.recv()
				require.NoError(t, err)
				require.Equal(t, resource.ClusterType, typeURL)
				require.Len(t, res, 1)

				// Then, answering that response, as the ingress gateway, and
				// for its secrets.
				require.NoError(t, st.send(adsRequest{node: &core.Node{Id: ingressNode}, typeURL: resource.ClusterType, nonce: nonce}))
				// The stream may have ended already: the end is what Recv
				// tells.
				_ = st.send(adsRequest{node: &core.Node{Id: ingressNode}, typeURL: resource.SecretType})
				for {
					_, _, res, err = st.recv()
					if err != nil {
						break
					}
					secrets, names := secretNames(t, res)
					require.Empty(t, secrets, "no secret reaches a stream that changed its node")
					require.NotContains(t, names, "ingress-cluster")
				}
				require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
				require.ErrorContains(t, err, `xds: the stream's node id is "egress-gateway"; a request may not name "ingress-gateway"`)

				entries := e.logs.FilterMessage("xDS stream ended: a request named another node id than the stream's").All()
				require.Len(t, entries, 1)
				fields := entries[0].ContextMap()
				require.Equal(t, egressNode, fields["node_id"])
				require.Equal(t, ingressNode, fields["requested_node_id"])
				require.Equal(t, string(channel), fields["channel"])
				require.Equal(t, 1.0, testutil.ToFloat64(e.server.clients.metrics.nodeChanged))
			})
		}
	}
	t.Run("unix/first request without a node", func(t *testing.T) {
		for _, delta := range []bool{false, true} {
			e := serveGateways(t, ChannelUnix, Config{})
			st := openADS(t, e.dial(t), delta)
			require.NoError(t, st.send(adsRequest{typeURL: resource.ClusterType}))
			require.NoError(t, st.send(adsRequest{node: &core.Node{Id: egressNode}, typeURL: resource.SecretType}))
			var err error
			for err == nil {
				var res []*anypb.Any
				_, _, res, err = st.recv()
				secrets, _ := secretNames(t, res)
				require.Empty(t, secrets)
			}
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
			require.ErrorContains(t, err, `xds: the stream's node id is ""; a request may not name "egress-gateway"`)
			require.NotErrorIs(t, err, io.EOF)
		}
	})
}
