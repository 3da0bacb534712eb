package file

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
)

// base is a valid file; each case below breaks one line of it.
const base = `services:
  - name: inventory
    fqdn: inventory.mesh-a.example
    consumers: [mesh-b]
    ports:
      - name: http
        port: 8080
        protocol: HTTP
        endpoints: [{address: 127.0.0.1, port: 9080}]
`

// second is a valid second service, appended by some cases.
const second = `  - name: ledger
    fqdn: ledger.mesh-a.example
    consumers: [mesh-b]
    ports:
      - name: pg
        port: 5432
        protocol: TLS
        endpoints: [{address: 10.0.3.7, port: 5432}]
`

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"protocol", "protocol: HTTP", "protocol: FOO",
			`services.yaml:8: services[0].ports[0].protocol: "FOO" is not one of HTTP HTTPS GRPC HTTP2 MONGO TCP TLS MTLS`},
		{"protocol case", "protocol: HTTP", "protocol: http",
			`services.yaml:8: services[0].ports[0].protocol: "http" is not one of HTTP`},
		{"unknown field", "protocol: HTTP", "protocl: HTTP",
			`services.yaml:8: services[0].ports[0].protocl: unknown field; known: name port protocol sni endpoints`},
		{"port type", "port: 8080", "port: http",
			`services.yaml:7: services[0].ports[0].port: got "http", want a number`},
		{"list type", "consumers: [mesh-b]", "consumers: mesh-b",
			`services.yaml:4: services[0].consumers: got "mesh-b", want a list`},
		{"duplicate key", "    consumers: [mesh-b]\n", "    consumers: [mesh-b]\n    consumers: [mesh-c]\n",
			`services.yaml:5: services[0].consumers: duplicate key; first at line 4`},
		{"fqdn missing", "    fqdn: inventory.mesh-a.example\n", "",
			`services.yaml:2: services[0].fqdn: required`},
		{"fqdn upper case", "fqdn: inventory", "fqdn: Inventory",
			`services.yaml:3: services[0].fqdn: "Inventory.mesh-a.example" is not a lowercase DNS name (contains an upper-case letter)`},
		{"fqdn wildcard", "fqdn: inventory.mesh-a.example", `fqdn: "*.mesh-a.example"`,
			`services.yaml:3: services[0].fqdn: "*.mesh-a.example" is not a lowercase DNS name (contains a wildcard)`},
		{"fqdn one label", "fqdn: inventory.mesh-a.example", "fqdn: inventory",
			`services.yaml:3: services[0].fqdn: "inventory" is not a lowercase DNS name (has fewer than two labels)`},
		{"name not a label", "name: inventory", "name: inventory_v2",
			`services.yaml:2: services[0].name: "inventory_v2" is not a DNS label`},
		{"mode", "    consumers:", "    mode: proxy\n    consumers:",
			`services.yaml:4: services[0].mode: "proxy" is not one of terminate passthrough`},
		{"passthrough without backend ids", "    consumers:", "    mode: passthrough\n    consumers:",
			`services.yaml:2: services[0].backendSpiffeIds: required with mode passthrough: the SPIFFE IDs the service presents, as it terminates the consumers' mutual TLS itself`},
		{"backend ids in terminate mode", "    consumers:", "    backendSpiffeIds: [spiffe://mesh-a.example/x]\n    consumers:",
			`services.yaml:4: services[0].backendSpiffeIds: only for mode passthrough`},
		{"backend id not spiffe", "    consumers:", "    mode: passthrough\n    backendSpiffeIds: [https://x]\n    consumers:",
			`services.yaml:5: services[0].backendSpiffeIds[0]: "https://x": scheme is missing or invalid`},
		{"consumers empty", "consumers: [mesh-b]", "consumers: []",
			`services.yaml:4: services[0].consumers: required: at least one peer`},
		{"consumer twice", "consumers: [mesh-b]", "consumers: [mesh-b, mesh-b]",
			`services.yaml:4: services[0].consumers[1]: "mesh-b" is listed twice`},
		{"port range", "port: 8080", "port: 70000",
			`services.yaml:7: services[0].ports[0].port: 70000 is not a port 1..65535`},
		{"port missing", "        port: 8080\n", "",
			`services.yaml:6: services[0].ports[0].port: required`},
		{"endpoint port", "port: 9080", "port: 0",
			`services.yaml:9: services[0].ports[0].endpoints[0].port: 0 is not a port 1..65535`},
		{"endpoints missing", "        endpoints: [{address: 127.0.0.1, port: 9080}]\n", "",
			`services.yaml:6: services[0].ports[0].endpoints: required: at least one endpoint`},
		{"address", "address: 127.0.0.1", "address: 'no such host!'",
			`services.yaml:9: services[0].ports[0].endpoints[0].address: "no such host!" is neither an IP address nor a DNS name (contains a character other than a letter, digit, '-' or '.')`},
		{"ports missing", "    ports:\n      - name: http\n        port: 8080\n        protocol: HTTP\n        endpoints: [{address: 127.0.0.1, port: 9080}]\n", "",
			`services.yaml:2: services[0].ports: required: at least one port`},
		{"port name twice", "        endpoints: [{address: 127.0.0.1, port: 9080}]\n",
			"        endpoints: [{address: 127.0.0.1, port: 9080}]\n      - {name: http, port: 8081, protocol: TCP, endpoints: [{address: 127.0.0.1, port: 9081}]}\n",
			`services.yaml:10: services[0].ports[1].name: "http" is used by ports[0] too`},
		{"sni", "        protocol: HTTP\n", "        protocol: HTTP\n        sni: a..b\n",
			`services.yaml:9: services[0].ports[0].sni: "a..b" is not a host name (has an empty label)`},
		{"consul service", "        protocol: HTTP\n", "        protocol: HTTP\n        consulService: Web.v1\n",
			`services.yaml:9: services[0].ports[0].consulService: "Web.v1" is not a Consul service name (a DNS label)`},
		{"name twice", "endpoints: [{address: 127.0.0.1, port: 9080}]\n",
			"endpoints: [{address: 127.0.0.1, port: 9080}]\n" + strings.Replace(second, "ledger", "inventory", 1),
			`services.yaml:10: services[1].name: "inventory" is used by services[0] too`},
		{"fqdn twice", "endpoints: [{address: 127.0.0.1, port: 9080}]\n",
			"endpoints: [{address: 127.0.0.1, port: 9080}]\n" + strings.Replace(second, "ledger.mesh-a", "inventory.mesh-a", 1),
			`services.yaml:11: services[1].fqdn: "inventory.mesh-a.example" is used by services[0] too`},
		{"sni twice", "endpoints: [{address: 127.0.0.1, port: 9080}]\n",
			"endpoints: [{address: 127.0.0.1, port: 9080}]\n" + strings.Replace(second, "protocol: TLS\n", "protocol: TLS\n        sni: outbound_.8080_._.inventory.mesh-a.example\n", 1),
			`services.yaml:17: services[1].ports[0].sni: "outbound_.8080_._.inventory.mesh-a.example" is used by services[0].ports[0] too`},
		{"empty item", "services:\n", "services:\n  -\n",
			`services.yaml:2: services[0]: empty list item`},
		{"not a mapping", base, "- inventory\n",
			`services.yaml:1: the document: got a list, want a mapping`},
		{"second document", base, base + "---\n" + base,
			`services.yaml:10: a second YAML document; the file holds one`},
		// The line is yaml's own: where it noticed, not where the cause is.
		{"syntax", "consumers: [mesh-b]", "consumers: [mesh-b",
			`services.yaml:3: did not find expected ',' or ']'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(base, tc.old, tc.new, 1)
			require.NotEqual(t, base, in, "the case changes nothing")
			_, err := Parse([]byte(in), "services.yaml")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestParseDefaults(t *testing.T) {
	got, err := Parse([]byte(base+second), "services.yaml")
	require.NoError(t, err)
	want := []model.Export{{
		// Sorted by name: ledger comes first although written second.
		Name: "ledger", FQDN: "ledger.mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b"},
		Ports: []model.ExportPort{{
			Name: "pg", Port: 5432, Protocol: model.TLS, SNI: "outbound_.5432_._.ledger.mesh-a.example",
			Endpoints: []model.LocalEndpoint{{Address: "10.0.3.7", Port: 5432}},
		}},
	}, {
		Name: "inventory", FQDN: "inventory.mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b"},
		Ports: []model.ExportPort{{
			Name: "http", Port: 8080, Protocol: model.HTTP, SNI: "outbound_.8080_._.inventory.mesh-a.example",
			Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: 9080}},
		}},
	}}
	want[0], want[1] = want[1], want[0]
	require.Equal(t, want, got)
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing yet\n", "services:\n", "services: []\n"} {
		got, err := Parse([]byte(in), "services.yaml")
		require.NoError(t, err, "%q", in)
		require.Empty(t, got, "%q", in)
	}
}

// The commented example must stay a valid file.
func TestParseExample(t *testing.T) {
	b, err := os.ReadFile("testdata/services.yaml")
	require.NoError(t, err)
	got, err := Parse(b, "testdata/services.yaml")
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "inventory", got[0].Name)
	require.Equal(t, map[string]string{"tier": "backend"}, got[0].Labels)
	require.Len(t, got[0].Ports[0].Endpoints, 2)
	require.Equal(t, model.Passthrough, got[1].Mode)
	require.Equal(t, "ledger.db.mesh-a.example", got[1].Ports[0].SNI)
	require.Equal(t, []string{"mesh-b", "mesh-c"}, got[1].Consumers)
}
