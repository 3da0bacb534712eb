package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/e2e/upstream"
)

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
