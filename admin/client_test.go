package admin_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/admin"
)

func TestClientDecodes(t *testing.T) {
	c := admin.Client{BaseURL: start(t, options(t)) + "/"}
	var status struct {
		TrustDomain string `json:"trustDomain"`
		Peers       int    `json:"peers"`
	}
	require.NoError(t, c.Get(context.Background(), "/api/v1/status", &status))
	require.Equal(t, "mesh-a.example", status.TrustDomain)
	require.Equal(t, 2, status.Peers)
	require.NoError(t, c.Get(context.Background(), "/api/v1/imports", nil))
}

func TestClientReportsTheAgentsError(t *testing.T) {
	base := start(t, options(t))
	c := admin.Client{BaseURL: base}
	err := c.Get(context.Background(), "/api/v1/exports", &struct{}{})
	require.EqualError(t, err, fmt.Sprintf("the meshfed agent at %s answered GET /api/v1/exports with 500 Internal Server Error: the catalog is not loaded yet", base))

	err = c.Get(context.Background(), "/api/v1/nothing", &struct{}{})
	require.EqualError(t, err, fmt.Sprintf("the meshfed agent at %s answered GET /api/v1/nothing with 404 Not Found: 404 page not found", base))
}

func TestClientCannotReachTheAgent(t *testing.T) {
	// A port just released: nothing listens there, and the kernel refuses
	// at once.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())

	c := admin.Client{BaseURL: "http://" + addr}
	err = c.Get(context.Background(), "/api/v1/status", &struct{}{})
	require.EqualError(t, err, fmt.Sprintf("cannot reach the meshfed agent at http://%[1]s: dial tcp %[1]s: connect: connection refused (is `meshfed run` running, and is admin.listen this address?)", addr))

	c = admin.Client{}
	require.EqualError(t, c.Get(context.Background(), "/api/v1/status", nil), "admin client: no agent address (BaseURL is empty)")
}

func TestClientWithACancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	base := start(t, options(t))
	c := admin.Client{BaseURL: base}
	require.EqualError(t, c.Get(ctx, "/api/v1/status", nil), fmt.Sprintf("GET %s/api/v1/status: context canceled", base))
}

func TestAgentURL(t *testing.T) {
	tests := []struct{ listen, url string }{
		{listen: "127.0.0.1:19100", url: "http://127.0.0.1:19100"},
		{listen: "[::1]:19100", url: "http://[::1]:19100"},
		{listen: "0.0.0.0:19100", url: "http://127.0.0.1:19100"},
		{listen: "[::]:19100", url: "http://[::1]:19100"},
		{listen: ":19100", url: "http://127.0.0.1:19100"},
		{listen: "agent.internal:19100", url: "http://agent.internal:19100"},
	}
	for _, tt := range tests {
		got, err := admin.AgentURL(tt.listen)
		require.NoError(t, err, tt.listen)
		require.Equal(t, tt.url, got, tt.listen)
	}
	_, err := admin.AgentURL("19100")
	require.EqualError(t, err, `admin.listen: "19100" is not host:port: address 19100: missing port in address`)
}
