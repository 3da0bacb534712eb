package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// startOperable is start, with the log level and reloads of the
// configuration file at path served by the admin API.
func startOperable(t *testing.T, c *config.Config, path string) *Agent {
	t.Helper()
	return start(t, c, func(a *Agent) {
		level := zap.NewAtomicLevel()
		a.LogLevel = &level
		a.ConfigPath = path
	}).Agent
}

// admin/openapi.yaml lists exactly the routes the agent serves, and every
// answer of a running agent that imports, exports and serves gateways is
// valid against it: camelCase names only (every object forbids names it
// does not list), no unset time.
func TestOpenAPIMatchesTheHandlers(t *testing.T) {
	ctx := context.Background()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(admin.OpenAPI)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(ctx))

	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a := start(t, ma.config(t, mb, ""))
	a.Catalog.SetExports([]model.Export{inventory()})
	b := startOperable(t, mb.config(t, ma, a.FederationAddr().String()), filepath.Join(mb.dir, "meshfed.yaml"))
	connect(t, b, adsclient.Options{NodeID: "egress-gateway", Delta: true})
	require.Eventually(t, func() bool {
		var views []GatewayView
		var imports []ImportView
		require.NoError(t, adminClient(b).Get(ctx, "/api/v1/gateways", &views))
		require.NoError(t, adminClient(b).Get(ctx, "/api/v1/imports", &imports))
		return len(views) == 1 && len(views[0].Types) == 5 && len(imports) == 1
	}, 20*time.Second, 20*time.Millisecond)

	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(documented)
	served := b.AdminPatterns()
	slices.Sort(served)
	require.Equal(t, documented, served)

	// The owner, once the consumer ACKed: deliveries in its status and
	// exports.
	require.Eventually(t, func() bool {
		var exports []ExportView
		require.NoError(t, adminClient(a.Agent).Get(ctx, "/api/v1/exports", &exports))
		return len(exports) == 1 && exports[0].Deliveries["mesh-b"].Acked
	}, 20*time.Second, 20*time.Millisecond)
	checkAnswers(t, doc, a.Agent, []answerCase{{"GET", "/api/v1/status", "", 200}, {"GET", "/api/v1/exports", "", 200}})

	// Every documented GET, so that a route added to the document is
	// checked too; then the answers a query, a body or a failure makes.
	var cases []answerCase
	for _, route := range documented {
		method, path, _ := strings.Cut(route, " ")
		if method != "GET" {
			continue
		}
		path = strings.ReplaceAll(path, "{node}", "egress-gateway")
		require.NotContains(t, path, "{", "a path parameter this test has no value for")
		cases = append(cases, answerCase{method, path, "", 200})
	}
	checkAnswers(t, doc, b, append(cases, []answerCase{
		{"GET", "/api/v1/gateways/nobody/config_dump", "", 404},
		{"GET", "/api/v1/gateways/egress-gateway/config_dump?type=scopedRoutes", "", 200},
		{"GET", "/api/v1/gateways/egress-gateway/config_dump?type=clusterz", "", 400},
		{"PUT", "/api/v1/loglevel", `{"level":"debug"}`, 200},
		{"PUT", "/api/v1/loglevel", `{"level":"loud"}`, 400},
		{"POST", "/api/v1/reload", "{}", 200},
		{"POST", "/api/v1/plan", "{}", 200},
		{"POST", "/api/v1/plan", `{"config":"meshfed.yaml"}`, 400},
		{"PUT", "/api/v1/loglevel", "level=debug", 415},
		{"PUT", "/api/v1/loglevel", `{"level":"` + strings.Repeat("a", 2<<20) + `"}`, 413},
	}...))
}

type answerCase struct {
	method, path, body string
	code               int
}

// checkAnswers asks a for each case over HTTP and validates the request
// and the answer against doc.
func checkAnswers(t *testing.T, doc *openapi3.T, a *Agent, cases []answerCase) {
	t.Helper()
	ctx := context.Background()
	base := "http://" + a.AdminAddr().String()
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s %s %s %d", a.cfg.TrustDomain, c.method, c.path, c.code), func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, strings.NewReader(c.body))
			require.NoError(t, err)
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
				if !strings.HasPrefix(c.body, "{") {
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				}
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, c.code, resp.StatusCode, "%s", body)
			require.NotContains(t, string(body), "0001-01-01")

			route, params, err := router.FindRoute(req)
			require.NoError(t, err)
			req.Body = io.NopCloser(strings.NewReader(c.body))
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route}
			if c.code < 400 {
				require.NoError(t, openapi3filter.ValidateRequest(ctx, in))
			}
			require.NoError(t, openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
				RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
				Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true},
			}))
		})
	}
}
