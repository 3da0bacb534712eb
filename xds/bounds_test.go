package xds

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/snapshot"
)

// mtlsEnv is a server over mutual TLS on loopback that lets any identity
// of its trust domain use any node id.
type mtlsEnv struct {
	addr      string
	server    *Server
	clientTLS *tls.Config
	ca        *certs.CA
	agent     spiffeid.ID
}

func serveMTLS(t *testing.T, cfg Config) *mtlsEnv {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("mesh-a.example")
	ca, err := certs.NewTestCA(td)
	require.NoError(t, err)
	agent, err := ca.IssueX509SVID(spiffeid.RequireFromPath(td, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	gateway, err := ca.IssueX509SVID(spiffeid.RequireFromPath(td, "/meshfed/gateway/egress"), time.Hour)
	require.NoError(t, err)

	cfg.TLS = certs.ServerTLSConfig(agent, ca.X509Bundle(), tlsconfig.AuthorizeMemberOf(td))
	cfg.AuthorizeNode = func(spiffeid.ID, string) error { return nil }
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := serveOn(t, lis, cfg)
	return &mtlsEnv{addr: lis.Addr().String(), server: s, ca: ca, agent: agent.ID,
		clientTLS: certs.ClientTLSConfig(gateway, ca.X509Bundle(), tlsconfig.AuthorizeID(agent.ID))}
}

// clientAs is the client configuration of another identity of the trust
// domain, a workload's for instance.
func (e *mtlsEnv) clientAs(t *testing.T, path string) *tls.Config {
	t.Helper()
	svid, err := e.ca.IssueX509SVID(spiffeid.RequireFromPath(e.agent.TrustDomain(), path), time.Hour)
	require.NoError(t, err)
	return certs.ClientTLSConfig(svid, e.ca.X509Bundle(), tlsconfig.AuthorizeID(e.agent))
}

func (e *mtlsEnv) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(e.clientTLS.Clone())))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// openDelta opens a delta stream on conn for node and sends its first
// request; cancel ends the stream.
func openDelta(t *testing.T, conn *grpc.ClientConn, node string, req *discovery.DeltaDiscoveryRequest) (discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	require.NoError(t, err)
	req.Node = &core.Node{Id: node}
	require.NoError(t, st.Send(req))
	return st, cancel
}

// streamsOf counts the server's streams that named node.
func (e *mtlsEnv) streamsOf(node string) int {
	n := 0
	for _, c := range e.server.Clients() {
		if c.NodeID == node {
			n++
		}
	}
	return n
}

// eachBound runs test on a server with a bound's default, def, and on one
// given cfg, which sets the bound to configured.
func eachBound(t *testing.T, def int, cfg Config, configured int, test func(t *testing.T, e *mtlsEnv, limit int)) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		limit int
	}{
		{"default", Config{}, def},
		{"configured", cfg, configured},
	} {
		t.Run(tc.name, func(t *testing.T) { test(t, serveMTLS(t, tc.cfg), tc.limit) })
	}
}

// TestStreamsPerNodeAreCapped: a node id gets MaxStreamsPerNode streams
// (config.DefaultMaxStreamsPerNode by default), over any
// connections; the next one ends with ResourceExhausted and is counted,
// while other nodes are still served, and a stream that ends makes room.
func TestStreamsPerNodeAreCapped(t *testing.T) {
	eachBound(t, config.DefaultMaxStreamsPerNode, Config{MaxStreamsPerNode: 2}, 2, func(t *testing.T, e *mtlsEnv, limit int) {
		conns := []*grpc.ClientConn{e.dial(t), e.dial(t)}
		cds := func() *discovery.DeltaDiscoveryRequest {
			return &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType}
		}
		var cancels []context.CancelFunc
		for i := range limit {
			st, cancel := openDelta(t, conns[i%2], "egress-delta", cds())
			r, err := st.Recv()
			require.NoError(t, err, "stream %d", i+1)
			require.Equal(t, resource.ClusterType, r.GetTypeUrl())
			cancels = append(cancels, cancel)
		}

		st, _ := openDelta(t, e.dial(t), "egress-delta", cds())
		_, err := st.Recv()
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
		require.ErrorContains(t, err, fmt.Sprintf(`xds: node id "egress-delta" has %d streams open, the most it may`, limit))
		require.Equal(t, 1.0, testutil.ToFloat64(e.server.clients.metrics.overNode))
		require.Equal(t, limit, e.streamsOf("egress-delta"))

		other, _ := openDelta(t, conns[0], "egress-sotw", cds())
		_, err = other.Recv()
		require.NoError(t, err, "another node is served on the same connection")

		cancels[0]()
		require.Eventually(t, func() bool { return e.streamsOf("egress-delta") == limit-1 }, 10*time.Second, time.Millisecond)
		again, _ := openDelta(t, conns[1], "egress-delta", cds())
		_, err = again.Recv()
		require.NoError(t, err, "the stream that ended made room")
		require.Equal(t, 1.0, testutil.ToFloat64(e.server.clients.metrics.overNode))
	})
}

// reconnectRequest is the largest request a gateway sends at 100,000
// resources of a type: a delta reconnect that subscribes to each by name
// and gives the version it holds.
func reconnectRequest(n int) *discovery.DeltaDiscoveryRequest {
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, InitialResourceVersions: make(map[string]string, n)}
	for i := range n {
		name := snapshot.EgressName("mesh-b", fmt.Sprintf("service-%06d.mesh-b.example", i), "http")
		req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, name)
		req.InitialResourceVersions[name] = strings.Repeat(fmt.Sprintf("%x", i%16), 64)
	}
	return req
}

// sizedRequest is a request of node that is size bytes on the wire.
func sizedRequest(node string, size int) *discovery.DeltaDiscoveryRequest {
	r := &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{""}}
	for n := size - proto.Size(r); proto.Size(r) != size; n -= proto.Size(r) - size {
		r.ResourceNamesSubscribe[0] = strings.Repeat("a", n)
	}
	return r
}

// TestRequestSizeIsBounded: a request of at most MaxRecvMsgSize
// (config.DefaultMaxRequestBytes by default) is taken: by default
// the reconnect of a gateway that holds 100,000 resources of a type, and
// with 1 MiB a request of exactly 1 MiB. A larger one (60 MiB, or 1 MiB
// and a byte) ends its stream with ResourceExhausted before it is acted
// on.
func TestRequestSizeIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cfg         Config
		limit       int
		taken, over func() *discovery.DeltaDiscoveryRequest
	}{
		{"default", Config{}, config.DefaultMaxRequestBytes,
			func() *discovery.DeltaDiscoveryRequest { return reconnectRequest(100_000) },
			func() *discovery.DeltaDiscoveryRequest {
				return &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNamesSubscribe: []string{string(bytes.Repeat([]byte{'a'}, 60<<20))}}
			}},
		{"configured", Config{MaxRecvMsgSize: 1 << 20}, 1 << 20,
			func() *discovery.DeltaDiscoveryRequest { return sizedRequest("egress-delta", 1<<20) },
			func() *discovery.DeltaDiscoveryRequest { return sizedRequest("egress-sotw", 1<<20+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := serveMTLS(t, tc.cfg)
			conn := e.dial(t)

			taken := tc.taken()
			size := proto.Size(taken)
			t.Logf("the request taken is %d bytes", size)
			require.LessOrEqual(t, size, tc.limit)
			openDelta(t, conn, "egress-delta", taken)
			require.Eventually(t, func() bool {
				for _, c := range e.server.Clients() {
					if c.NodeID == "egress-delta" && len(c.Types) == 1 && c.Types[0].TypeURL == taken.TypeUrl {
						return true
					}
				}
				return false
			}, time.Minute, time.Millisecond, "the server took the request")

			over := tc.over()
			st, _ := openDelta(t, conn, "egress-sotw", over)
			_, err := st.Recv()
			require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
			require.ErrorContains(t, err, fmt.Sprintf("grpc: received message larger than max (%d vs. %d)", proto.Size(over), tc.limit))
			require.Zero(t, e.streamsOf("egress-sotw"), "the request was never acted on")
		})
	}
}

// rawH2 is a client that speaks HTTP/2 itself over mutual TLS, to open
// streams a well-behaved gRPC client would hold back.
type rawH2 struct {
	t    require.TestingT
	conn *tls.Conn
	fr   *http2.Framer
	// wmu orders the writes of the goroutine that opens streams and of
	// the one that answers the server's pings (endings).
	wmu  sync.Mutex
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	// maxStreams is what the server's SETTINGS allow.
	maxStreams uint32
}

func dialRawH2(t *testing.T, e *mtlsEnv) *rawH2 {
	t.Helper()
	return dialRawH2As(t, e.addr, e.clientTLS)
}

// dialRawH2As dials addr with the client configuration tlsCfg; the
// connection ends with the test.
func dialRawH2As(t *testing.T, addr string, tlsCfg *tls.Config) *rawH2 {
	t.Helper()
	c := newRawH2(t, addr, tlsCfg)
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func newRawH2(t require.TestingT, addr string, tlsCfg *tls.Config) *rawH2 {
	cfg := tlsCfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, cfg)
	require.NoError(t, err)
	c := &rawH2{t: t, conn: conn, fr: http2.NewFramer(conn, conn)}
	c.enc = hpack.NewEncoder(&c.hbuf)
	_, err = conn.Write([]byte(http2.ClientPreface))
	require.NoError(t, err)
	require.NoError(t, c.fr.WriteSettings())
	for {
		f, err := c.fr.ReadFrame()
		require.NoError(t, err)
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			v, ok := s.Value(http2.SettingMaxConcurrentStreams)
			require.True(t, ok, "the server announces its stream limit")
			c.maxStreams = v
			require.NoError(t, c.fr.WriteSettingsAck())
			return c
		}
	}
}

const (
	deltaADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
	sotwADS  = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
)

// open starts the delta ADS call on stream id, without a message.
func (c *rawH2) open(id uint32) { c.openCall(id, deltaADS) }

// openCall starts the call of method on stream id, without a message.
func (c *rawH2) openCall(id uint32, method string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbuf.Reset()
	for _, h := range [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":authority", "xds"},
		{":path", method},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		require.NoError(c.t, c.enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]}))
	}
	require.NoError(c.t, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}))
}

// refusedUntil reads frames until the server resets stream last, and
// returns the streams it refused.
func (c *rawH2) refusedUntil(last uint32) []uint32 {
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(time.Minute)))
	var refused []uint32
	for {
		f, err := c.fr.ReadFrame()
		require.NoError(c.t, err)
		rst, ok := f.(*http2.RSTStreamFrame)
		if !ok {
			continue
		}
		require.Equal(c.t, http2.ErrCodeRefusedStream, rst.ErrCode, "stream %d", rst.StreamID)
		refused = append(refused, rst.StreamID)
		if rst.StreamID == last {
			return refused
		}
	}
}

// TestStreamsPerConnectionAreBounded: the server announces
// MaxConcurrentStreams (config.DefaultMaxStreamsPerConnection by
// default), and a client that ignores it and opens more streams on one
// connection has every one beyond it refused.
func TestStreamsPerConnectionAreBounded(t *testing.T) {
	eachBound(t, config.DefaultMaxStreamsPerConnection, Config{MaxConcurrentStreams: 3}, 3, func(t *testing.T, e *mtlsEnv, limit int) {
		c := dialRawH2(t, e)
		require.Equal(t, uint32(limit), c.maxStreams)
		const extra = 5
		var ids []uint32
		for i := range limit + extra {
			ids = append(ids, uint32(2*i+1))
			c.open(ids[i])
		}
		require.Equal(t, ids[limit:], c.refusedUntil(ids[len(ids)-1]))
	})
}

// send sends one gRPC message on stream id.
func (c *rawH2) send(id uint32, m proto.Message) {
	b, err := proto.Marshal(m)
	require.NoError(c.t, err)
	msg := make([]byte, 5+len(b))
	binary.BigEndian.PutUint32(msg[1:], uint32(len(b)))
	copy(msg[5:], b)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	require.NoError(c.t, c.fr.WriteData(id, false, msg))
}

// drain reads and drops the server's frames until the connection ends.
func (c *rawH2) drain() {
	for {
		if _, err := c.fr.ReadFrame(); err != nil {
			return
		}
	}
}

var measureStreams = flag.Int("xds.streams", 0, "measure the server's cost of this many streams on one connection, each with its own node id; 0 skips")

// TestMeasureStreamsOnOneConnection reports what a client that opens many
// streams on one connection, ignoring the server's limit, costs the
// server, with the old limits beside the current ones:
//
//	go test ./xds -run 'TestMeasureStreamsOnOneConnection/unbounded' -v -args -xds.streams 10000
//	go test ./xds -run 'TestMeasureStreamsOnOneConnection/defaults' -v -args -xds.streams 10000
func TestMeasureStreamsOnOneConnection(t *testing.T) {
	n := *measureStreams
	if n == 0 {
		t.Skip("-xds.streams not set")
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"unbounded (100,000 streams a connection, no node, identity or server cap)", Config{MaxConcurrentStreams: 100_000, MaxStreamsPerNode: 1 << 30,
			MaxStreamsPerIdentity: 1 << 30, MaxStreams: 1 << 30}},
		{"defaults", Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := serveMTLS(t, tc.cfg)
			runtime.GC()
			g0, rss0, heap0 := runtime.NumGoroutine(), rssBytes(t), heapInuse()
			c := dialRawH2(t, e)
			go c.drain()
			for i := range n {
				id := uint32(2*i + 1)
				c.open(id)
				c.send(id, &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: fmt.Sprintf("gw-%d", i)}, TypeUrl: resource.ClusterType})
			}
			want := min(n, int(c.maxStreams))
			require.Eventually(t, func() bool { return len(e.server.Clients()) == want }, 5*time.Minute, 10*time.Millisecond)
			runtime.GC()
			g1, rss1, heap1 := runtime.NumGoroutine(), rssBytes(t), heapInuse()
			t.Logf("%d streams opened, %d served: %+d goroutines, %+.1f MB heap in use, %+.1f MB RSS (run one case a process for RSS)",
				n, want, g1-g0, float64(heap1-heap0)/1e6, float64(rss1-rss0)/1e6)
		})
	}
}

func heapInuse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestKeepaliveIsEnforced: a client that pings more often than
// keepaliveMinTime is sent GOAWAY (too_many_pings) after gRPC's
// few strikes, instead of costing the server a ping answer each time.
func TestKeepaliveIsEnforced(t *testing.T) {
	e := serveMTLS(t, Config{})
	c := dialRawH2(t, e)
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(time.Minute)))
	for i := range 10 {
		require.NoError(t, c.fr.WritePing(false, [8]byte{byte(i)}))
	}
	for {
		f, err := c.fr.ReadFrame()
		require.NoError(t, err)
		if g, ok := f.(*http2.GoAwayFrame); ok {
			require.Equal(t, http2.ErrCodeEnhanceYourCalm, g.ErrCode)
			require.Equal(t, "too_many_pings", string(g.DebugData()))
			return
		}
	}
}
