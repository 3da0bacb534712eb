package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/e2e/upstream"
)

// httpGet sends GET path to the service the peer of m exports, through m's
// egress gateway at addr, with the service's name and port as Host.
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

// importedHTTP calls the HTTP port of the service m's peer exports, through
// m's egress gateway, and returns the upstream's reply.
func (m *mesh) importedHTTP(ctx context.Context, path string) (upstream.Reply, error) {
	host := m.peer.fqdn() + ":" + strconv.Itoa(httpPort)
	addr := net.JoinHostPort(m.ip, strconv.Itoa(httpPort))
	code, body, err := httpGet(ctx, addr, host, path)
	if err != nil {
		return upstream.Reply{}, err
	}
	if code != http.StatusOK {
		return upstream.Reply{}, fmt.Errorf("GET http://%s%s through %s: %d %s", host, path, addr, code, body)
	}
	var r upstream.Reply
	return r, json.Unmarshal(body, &r)
}

func TestHTTPBothWays(t *testing.T) {
	a, b := federate(t, options{})
	for _, m := range []*mesh{a, b} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := m.importedHTTP(ctx, "/hello")
		cancel()
		require.NoError(t, err, "%s -> %s", m.name, m.peer.name)
		require.Equal(t, m.peer.service+"-http", r.Service)
		require.Equal(t, "/hello", r.Path)
		require.Equal(t, m.peer.fqdn()+":"+strconv.Itoa(httpPort), r.Host)
	}
}
