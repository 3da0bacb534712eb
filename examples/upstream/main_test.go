package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// start serves an upstream on a loopback port until the test ends, and
// returns its base URL.
func start(t *testing.T, service, mesh string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, newServer(service, mesh), lis) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, "graceful shutdown")
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	return "http://" + lis.Addr().String()
}

func TestReplyOverHTTP(t *testing.T) {
	base := start(t, "payments", "mesh-b")

	req, err := http.NewRequest(http.MethodGet, base+"/charge/42?x=1", nil)
	require.NoError(t, err)
	// What the gateways would present: the Host of the imported name.
	req.Host = "payments.mesh-b.example:8080"
	req.Header.Set("User-Agent", "test-client")
	req.Header.Set("X-Forwarded-Proto", "http")
	req.Header.Add("X-Forwarded-For", "10.0.0.1")
	req.Header.Add("X-Forwarded-For", "10.0.0.2")
	req.Header.Set("X-Forwarded-Client-Cert", `By=spiffe://mesh-b.example/meshfed/gateway/ingress;URI=spiffe://mesh-a.example/meshfed/gateway/egress`)
	req.Header.Set("X-Not-Of-Interest", "hidden")

	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	var got Reply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.Equal(t, Reply{
		Service: "payments",
		Mesh:    "mesh-b",
		Host:    "payments.mesh-b.example:8080",
		Path:    "/charge/42",
		Headers: map[string]string{
			"user-agent":              "test-client",
			"x-forwarded-proto":       "http",
			"x-forwarded-for":         "10.0.0.1, 10.0.0.2",
			"x-forwarded-client-cert": `By=spiffe://mesh-b.example/meshfed/gateway/ingress;URI=spiffe://mesh-a.example/meshfed/gateway/egress`,
		},
	}, got)
}

func TestReplyWithoutHeadersOfInterest(t *testing.T) {
	base := start(t, "inventory", "mesh-a")
	req, err := http.NewRequest(http.MethodGet, base+"/", nil)
	require.NoError(t, err)
	req.Header.Set("User-Agent", "") // Go's client then sends none
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	// headers is an empty object, never null, so a consumer can index it.
	require.JSONEq(t, `{"service":"inventory","mesh":"mesh-a","host":"`+base[len("http://"):]+`","path":"/","headers":{}}`, string(raw))
}

func TestOnlyGetAndHead(t *testing.T) {
	base := start(t, "inventory", "mesh-a")

	resp, err := http.Post(base+"/", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))

	resp, err = http.Head(base + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestProbe(t *testing.T) {
	base := start(t, "inventory", "mesh-a")
	ctx := context.Background()

	resp, err := http.Get(base + "/healthz")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, "ok\n", string(body))

	require.NoError(t, probe(ctx, base+"/healthz"))

	// A non-2xx answer fails the probe, and so does a refused connection.
	unhealthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer unhealthy.Close()
	require.ErrorContains(t, probe(ctx, unhealthy.URL), "503 Service Unavailable")

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + lis.Addr().String()
	require.NoError(t, lis.Close())
	require.Error(t, probe(ctx, closed))
}
