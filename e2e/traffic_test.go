package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshfed/meshfed/e2e/upstream"
)

// The traffic tests call, from each mesh, the service the other exports,
// through the caller's egress and the owner's ingress gateway, and check
// what came back.

func TestTrafficBothWaysDelta(t *testing.T) { testTraffic(t, options{}) }

func TestTrafficBothWaysSotW(t *testing.T) { testTraffic(t, options{sotw: true}) }

func testTraffic(t *testing.T, opts options) {
	a, b := federate(t, opts)
	for _, m := range []*mesh{a, b} {
		t.Run(m.Name+"->"+m.peer.Name, func(t *testing.T) {
			t.Run("http", func(t *testing.T) { checkHTTP(t, m) })
			t.Run("grpc", func(t *testing.T) { checkGRPC(t, m) })
			t.Run("tcp", func(t *testing.T) { checkTCP(t, m) })
			t.Run("websocket", func(t *testing.T) { checkWebSocket(t, m) })
		})
	}
}

func checkHTTP(t *testing.T, m *mesh) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := m.importedHTTP(ctx, "/hello")
	require.NoError(t, err)
	require.Equal(t, m.peer.Service+"-http", r.Service)
	require.Equal(t, "/hello", r.Path)
	require.Equal(t, m.peer.FQDN()+":"+strconv.Itoa(httpPort), r.Host, "the Host the upstream saw")
}

func checkGRPC(t *testing.T, m *mesh) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := m.grpcClient(t)
	checkUnary(ctx, t, m, c)

	const n = 100
	params := make([]*testpb.ResponseParameters, n)
	for i := range params {
		params[i] = &testpb.ResponseParameters{Size: int32(i + 1)}
	}
	stream, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
	require.NoError(t, err)
	for i := range n {
		msg, err := stream.Recv()
		require.NoError(t, err, "message %d", i)
		require.Len(t, msg.GetPayload().GetBody(), i+1)
	}
	_, err = stream.Recv()
	require.ErrorIs(t, err, io.EOF)
}

func checkTCP(t *testing.T, m *mesh) {
	conn, err := net.DialTimeout("tcp", m.importedTCPAddr(t), 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	payload := make([]byte, 1<<20)
	_, err = rand.Read(payload)
	require.NoError(t, err)
	go func() { _, _ = conn.Write(payload) }()
	got := make([]byte, len(payload))
	_, err = io.ReadFull(conn, got)
	require.NoError(t, err)
	require.True(t, bytes.Equal(payload, got), "the 1 MiB came back intact")
}

func checkWebSocket(t *testing.T, m *mesh) {
	c := dialWebSocket(t, m)
	for i := range 10 {
		msg := fmt.Sprintf("message %d", i)
		require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(msg)))
		kind, got, err := c.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, websocket.TextMessage, kind)
		require.Equal(t, msg, string(got))
	}
}

// egressHTTPAddr is where m's egress gateway serves HTTP imports of port
// httpPort.
func (m *mesh) egressHTTPAddr() string { return net.JoinHostPort(m.IP, strconv.Itoa(httpPort)) }

// importedHTTP calls the HTTP port of the service m's peer exports, through
// m's egress gateway, and returns the upstream's reply.
func (m *mesh) importedHTTP(ctx context.Context, path string) (upstream.Reply, error) {
	host := m.peer.FQDN() + ":" + strconv.Itoa(httpPort)
	code, body, err := httpGet(ctx, m.egressHTTPAddr(), host, path)
	if err != nil {
		return upstream.Reply{}, err
	}
	if code != http.StatusOK {
		return upstream.Reply{}, fmt.Errorf("GET http://%s%s through %s: %d %s", host, path, m.egressHTTPAddr(), code, body)
	}
	var r upstream.Reply
	return r, json.Unmarshal(body, &r)
}

// checkUnary makes a unary call on c, a client of the gRPC service m's
// peer exports, and checks that the service echoed it.
func checkUnary(ctx context.Context, t *testing.T, m *mesh, c testpb.TestServiceClient) {
	t.Helper()
	resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}})
	require.NoError(t, err)
	require.Equal(t, "ping", string(resp.GetPayload().GetBody()))
	require.Equal(t, m.peer.Service+"-grpc", resp.GetServerId())
}

// grpcClient is a client of the gRPC service m's peer exports, through m's
// egress gateway, which routes on the :authority.
func (m *mesh) grpcClient(t *testing.T) testpb.TestServiceClient {
	t.Helper()
	return m.grpcClientAs(t, m.peer.FQDN()+":"+strconv.Itoa(grpcPort))
}

// grpcClientAs is a client of m's egress gateway's gRPC port that sends
// authority as the :authority.
func (m *mesh) grpcClientAs(t *testing.T, authority string) testpb.TestServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(net.JoinHostPort(m.IP, strconv.Itoa(grpcPort)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(authority))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return testpb.NewTestServiceClient(conn)
}

// importedTCPAddr is the dedicated egress listener of the TCP port of the
// service m's peer exports.
func (m *mesh) importedTCPAddr(t *testing.T) string {
	t.Helper()
	port, ok := m.agent.Runner.EgressPort(m.peer.Name, m.peer.Service, "tcp")
	require.True(t, ok, "the TCP import has an egress port")
	return net.JoinHostPort(m.IP, strconv.FormatUint(uint64(port), 10))
}

// httpGet sends GET path with host as Host, connecting to addr.
func httpGet(ctx context.Context, addr, host, path string) (int, []byte, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// dialWebSocket opens a WebSocket to the HTTP port of the service m's peer
// exports, through m's egress gateway.
func dialWebSocket(t *testing.T, m *mesh) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, m.egressHTTPAddr())
		},
		HandshakeTimeout: 10 * time.Second,
	}
	c, resp, err := d.Dial("ws://"+m.peer.FQDN()+":"+strconv.Itoa(httpPort)+"/ws", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	return c
}

// echoPlain sends a few bytes to addr and checks that they come back.
func echoPlain(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	msg := "hello in plain text"
	_, err = io.WriteString(conn, msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(conn, got)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

// The egress HTTP listeners route by Host through one routing scope per
// imported instance (scoped RDS): the scope key is the host as DNS knows
// it (any case, without the port) and the listener's port.

func TestHostRoutingDelta(t *testing.T) { testHostRouting(t, options{}) }

func TestHostRoutingSotW(t *testing.T) { testHostRouting(t, options{sotw: true}) }

func testHostRouting(t *testing.T, opts options) {
	a, _ := federate(t, opts)
	fqdn := a.peer.FQDN()
	port := strconv.Itoa(httpPort)
	service := a.peer.Service + "-http"
	for _, tc := range []struct {
		name, host string
		headers    []string
		code       int
		// saw is the Host the owner sees, when not host.
		saw string
	}{
		{name: "host and port", host: fqdn + ":" + port, code: http.StatusOK},
		{name: "host without port", host: fqdn, code: http.StatusOK},
		{name: "upper-case host", host: strings.ToUpper(fqdn) + ":" + port, code: http.StatusOK},
		{name: "mixed-case host without port", host: strings.ToUpper(fqdn[:1]) + fqdn[1:], code: http.StatusOK},
		{name: "fully qualified host", host: fqdn + ".:" + port, code: http.StatusOK, saw: fqdn + ":" + port},
		{name: "unknown host", host: "unknown." + fqdn + ":" + port, code: http.StatusNotFound},
		{name: "another port", host: fqdn + ":" + strconv.Itoa(grpcPort), code: http.StatusNotFound},
		// A workload cannot choose its scope: the filter replaces the
		// header it sends.
		{name: "forged scope", host: "unknown.example", headers: []string{"X-Meshfed-Scope: " + fqdn + ":" + port}, code: http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code, body := rawGet(ctx, t, a.egressHTTPAddr(), tc.host, "/headers", tc.headers...)
			require.Equal(t, tc.code, code, "Host %q: %s", tc.host, body)
			if code != http.StatusOK {
				return
			}
			var r upstream.Reply
			require.NoError(t, json.Unmarshal(body, &r))
			require.Equal(t, service, r.Service)
			saw := tc.host
			if tc.saw != "" {
				saw = tc.saw
			}
			require.Equal(t, saw, r.Host, "the Host the owner saw")
			require.NotContains(t, r.Headers, "x-meshfed-scope", "the scope key stays in the gateway")
		})
	}

	t.Run("upper-case gRPC authority", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		checkUnary(ctx, t, a, a.grpcClientAs(t, strings.ToUpper(fqdn)+":"+strconv.Itoa(grpcPort)))
	})
	a.checkGateways()
}

// rawGet sends an HTTP/1.1 GET with exactly this Host header (a client
// library may normalize it) and returns the status and body.
func rawGet(ctx context.Context, t *testing.T, addr, host, path string, headers ...string) (int, []byte) {
	t.Helper()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		require.NoError(t, conn.SetDeadline(d))
	}
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", path, host)
	for _, h := range headers {
		req += h + "\r\n"
	}
	_, err = io.WriteString(conn, req+"\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}
