package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// A peer's catalog grows by 2,000 HTTP services in one change and shrinks
// back in one: no gateway of either mesh rejects an update or waits for
// one until its initial fetch timeout (checkGateways), and the service
// added last is served through both gateways once imported.
func TestBulkAddAndRemove(t *testing.T) {
	a, b := federate(t, options{})
	const n = 2000
	var extra strings.Builder
	for i := range n {
		fmt.Fprintf(&extra, "  - {name: bulk-%04d, fqdn: bulk-%04d.%s, consumers: [%s], ports: [{name: http, port: %d, protocol: HTTP, endpoints: [{address: 127.0.0.1, port: %d}]}]}\n",
			i, i, b.TrustDomain(), a.Name, httpPort, b.Upstreams.HTTP)
	}
	b.ExtraServices = extra.String()
	b.writeServices(true)
	last := fmt.Sprintf("bulk-%04d.%s:%d", n-1, b.TrustDomain(), httpPort)
	eventually(t, "the service added last answers through both gateways", func(ctx context.Context) error {
		code, body, err := httpGet(ctx, a.egressHTTPAddr(), last, "/")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET http://%s/: %d %s", last, code, body)
		}
		return nil
	})
	imported := len(a.agent.Catalog.Imports())
	if imported < n {
		t.Fatalf("%d imports, want at least %d", imported, n)
	}
	a.checkGateways()
	b.checkGateways()

	b.ExtraServices = ""
	b.writeServices(true)
	eventually(t, "the services are gone from the egress", func(ctx context.Context) error {
		code, _, err := httpGet(ctx, a.egressHTTPAddr(), last, "/")
		if err != nil {
			return err
		}
		if code != http.StatusNotFound {
			return fmt.Errorf("GET http://%s/: %d, want %d", last, code, http.StatusNotFound)
		}
		if k := len(a.agent.Catalog.Imports()); k >= n {
			return fmt.Errorf("%d imports left", k)
		}
		return nil
	})
	if _, err := a.importedHTTP(context.Background(), "/"); err != nil {
		t.Fatalf("the first export is still served: %v", err)
	}
	t.Logf("%s imported %s services at most", a.Name, strconv.Itoa(imported))
}
