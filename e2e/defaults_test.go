package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// With an HTTP route timeout and a stream idle timeout of 1 s, a slower
// plain request is cut with a 504, while a WebSocket and a gRPC stream stay
// open across a longer idle pause: streams have neither timeout, as Envoy's
// own config_dump shows.
func TestStreamsOutliveTheRouteTimeout(t *testing.T) {
	a, _ := federate(t, options{httpRouteTimeout: "1s", streamIdleTimeout: "1s"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const pause = 2 * time.Second

	code, body, err := httpGet(ctx, a.egressHTTPAddr(), a.peer.FQDN()+":"+strconv.Itoa(httpPort), "/sleep/"+pause.String())
	require.NoError(t, err)
	require.Equal(t, http.StatusGatewayTimeout, code, "%s", body)

	ws := dialWebSocket(t, a)
	stream, err := a.grpcClient(t).FullDuplexCall(ctx)
	require.NoError(t, err)
	exchange := func() {
		t.Helper()
		require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte("ping")))
		_, msg, err := ws.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, "ping", string(msg))
		require.NoError(t, stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 3}}}))
		_, err = stream.Recv()
		require.NoError(t, err)
	}
	exchange()
	time.Sleep(pause)
	exchange()
	require.NoError(t, stream.CloseSend())

	routes := egressRoutes(ctx, t, a)
	for name, r := range routes {
		action := r.GetRoute()
		streaming := strings.HasSuffix(name, "/grpc[0]") || len(r.GetMatch().GetHeaders()) > 0
		if streaming {
			require.Zero(t, action.GetTimeout().AsDuration(), "%s: route timeout", name)
			require.NotNil(t, action.GetIdleTimeout(), "%s: idle timeout set", name)
			require.Zero(t, action.GetIdleTimeout().AsDuration(), "%s: idle timeout", name)
		} else {
			require.Equal(t, time.Second, action.GetTimeout().AsDuration(), "%s: route timeout", name)
		}
	}
	require.Len(t, routes, 3, "the gRPC route, and the WebSocket and plain routes of HTTP: %v", routes)
}

// egressRoutes are the routes of m's egress gateway's routing scopes as
// Envoy holds them, by virtual host and whether they match an upgrade.
func egressRoutes(ctx context.Context, t *testing.T, m *mesh) map[string]*route.Route {
	t.Helper()
	dump, err := m.egress.ConfigDump(ctx, "resource=dynamic_scoped_route_configs")
	require.NoError(t, err)
	out := map[string]*route.Route{}
	for _, c := range dump.GetConfigs() {
		d := &adminv3.ScopedRoutesConfigDump_DynamicScopedRouteConfigs{}
		require.NoError(t, c.UnmarshalTo(d))
		for _, a := range d.GetScopedRouteConfigs() {
			sc := &route.ScopedRouteConfiguration{}
			require.NoError(t, a.UnmarshalTo(sc))
			addRoutes(out, sc.GetRouteConfiguration())
		}
	}
	return out
}

func addRoutes(out map[string]*route.Route, rc *route.RouteConfiguration) {
	for _, vh := range rc.GetVirtualHosts() {
		for i, r := range vh.GetRoutes() {
			out[fmt.Sprintf("%s[%d]", vh.GetName(), i)] = r
		}
	}
}

// The egress gateway serves only the clients of gateways.egress.
// allowedSources.
func TestEgressServesOnlyAllowedSources(t *testing.T) {
	a, _ := federate(t, options{allowedSources: []string{"127.0.0.1/32"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.importedHTTP(ctx, "/from-an-allowed-source")
	require.NoError(t, err)

	before := a.peer.up.http.Accepted()
	outsider := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.77")}}
			return d.DialContext(ctx, network, a.egressHTTPAddr())
		},
	}}
	_, err = outsider.Get("http://" + a.peer.FQDN() + ":" + strconv.Itoa(httpPort) + "/from-elsewhere")
	require.Error(t, err, "a client from 127.0.0.77 is refused")
	require.Equal(t, before, a.peer.up.http.Accepted(), "nothing reached the owner")
	st, err := a.egress.Stats(ctx, "rbac")
	require.NoError(t, err)
	require.Positive(t, st.Sum("", "rbac.denied"), "Envoy counts the denied connection: %v", st)
}

// No x-envoy-* header crosses to the owner, neither those a workload sends
// nor the egress gateway's own, and no cluster is capped by Envoy's default
// circuit breaker of 1,024.
func TestNoEnvoyHeadersReachTheOwner(t *testing.T) {
	a, _ := federate(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.peer.FQDN()+":"+strconv.Itoa(httpPort)+"/headers", nil)
	require.NoError(t, err)
	req.Header.Set("X-Envoy-Retry-On", "5xx")
	req.Header.Set("X-Envoy-Upstream-Rq-Timeout-Ms", "1")
	req.Header.Set("X-Envoy-Max-Retries", "9")
	// Envoy itself drops those of an external request; not these.
	req.Header.Set("X-Envoy-Original-Dst-Host", "10.0.0.1:80")
	req.Header.Set("X-Envoy-Upstream-Alt-Stat-Name", "mesh-a-internals")
	req.Header.Set("X-Envoy-Hedge-On-Per-Try-Timeout", "true")
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, a.egressHTTPAddr())
	}}}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var r struct{ Headers map[string]string }
	require.NoError(t, jsonDecode(resp.Body, &r))
	for h := range r.Headers {
		require.False(t, strings.HasPrefix(h, "x-envoy-"), "the owner received %s", h)
	}
	require.NotEmpty(t, r.Headers, "the reply lists the headers it got")
	for h := range resp.Header {
		require.False(t, strings.HasPrefix(strings.ToLower(h), "x-envoy-"), "the workload received %s from the egress gateway", h)
	}

	st, err := a.egress.Stats(ctx, "circuit_breakers.default.remaining_cx$")
	require.NoError(t, err)
	require.NotEmpty(t, st)
	for name, v := range st {
		require.Greater(t, v, uint64(1<<30), "%s", name)
	}
}
