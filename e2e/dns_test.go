package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/examples/twomesh"
)

// A workload that knows only the imported name and the service's port
// resolves the name through meshfed's DNS server and connects where the
// answer says: the egress gateway, on the service's own port.
func TestImportReachedByNameThroughDNS(t *testing.T) {
	a, _ := federate(t, options{})
	resolver := twomesh.Resolver(a.DNS)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	name := a.peer.FQDN()
	addrs, err := resolver.LookupHost(ctx, name)
	require.NoError(t, err)
	require.Equal(t, []string{a.IP}, addrs, "the name resolves to the egress gateway")
	_, srvs, err := resolver.LookupSRV(ctx, "http", "tcp", name)
	require.NoError(t, err)
	require.Len(t, srvs, 1)
	require.Equal(t, uint16(httpPort), srvs[0].Port, "the service keeps its own port")

	client := &http.Client{Transport: &http.Transport{
		DialContext:       (&net.Dialer{Resolver: resolver}).DialContext,
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+name+":"+strconv.Itoa(httpPort)+"/by-name", nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var r upstream.Reply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	require.Equal(t, a.peer.Service+"-http", r.Service)
	require.Equal(t, "/by-name", r.Path)
}
