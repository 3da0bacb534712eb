package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
)

func exportNames(a *Agent) []string {
	var out []string
	for _, e := range a.Catalog.Exports() {
		out = append(out, e.Name)
	}
	return out
}

// postAdmin posts body to the agent's admin API at path.
func postAdmin(t *testing.T, a *Agent, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+a.AdminAddr().String()+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func postReload(t *testing.T, a *Agent) (int, string) {
	t.Helper()
	return postAdmin(t, a, "/api/v1/reload", "{}")
}

// reloadable federates mesh-a, run from its configuration file with the
// registry file services.yaml (more.yaml beside it adds a service), with
// mesh-b, which imports its service: it returns both meshes, mesh-a's
// agent and configuration file, and mesh-b's agent.
func reloadable(t *testing.T) (ma, mb mesh, a *Agent, path string, b *running) {
	t.Helper()
	root := t.TempDir()
	ma, mb = newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	require.NoError(t, os.WriteFile(filepath.Join(ma.dir, "services.yaml"), []byte(registryFile), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(ma.dir, "more.yaml"), []byte(registryFile+secondService), 0o600))
	path = filepath.Join(ma.dir, "meshfed.yaml")
	a = startOperable(t, ma.config(t, mb, "", "exports: {file: services.yaml}\n"), path)
	b = start(t, mb.config(t, ma, a.FederationAddr().String()))
	require.Eventually(t, func() bool { return len(b.Catalog.Imports()) == 1 }, 20*time.Second, 20*time.Millisecond)
	return ma, mb, a, path, b
}

// A reload over the admin API applies a new source of exports at once,
// names each other changed field as needing a restart, and refuses a file
// that does not pass the check with its file, line and field, keeping the
// running configuration.
func TestReloadAppliesExportsAndNamesWhatNeedsARestart(t *testing.T) {
	ma, mb, a, path, b := reloadable(t)

	// Nothing changed.
	code, body := postReload(t, a)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"applied": [], "needsRestart": []}`, body)

	// Another registry file, a longer grace, a shorter redial cap, a
	// changed peer, another hold-off and settle time: all but the
	// hold-off and the settle time apply at once, and mesh-b, whose
	// stream the change of its peer ended, connects again.
	ma.config(t, mb, "", "exports: {file: more.yaml}\n")
	editFile(t, path, "listen: 127.0.0.1:0\n  ingress:", "listen: 127.0.0.1:0\n  grace: 45s\n  maxBackoff: 5s\n  ingress:")
	editFile(t, path, "    allowLoopback: true\n", "    allowLoopback: true\n    maxServices: 5000\n")
	editFile(t, path, "holdoff: 1ms", "holdoff: 2ms")
	editFile(t, path, "identity:\n", "identity:\n  settleTime: 3s\n")
	code, body = postReload(t, a)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"applied": ["federation.grace", "federation.maxBackoff", "peers[mesh-b].maxServices", "exports.file"], "needsRestart": ["identity.settleTime", "xds.holdoff"]}`, body)
	require.Equal(t, 5*time.Second, a.Peers.MaxBackoff())
	require.Equal(t, []string{"inventory", "ledger"}, exportNames(a))
	require.Eventually(t, func() bool { return len(b.Catalog.Imports()) == 2 }, 20*time.Second, 20*time.Millisecond)

	// The new file is followed, the old one no longer.
	require.NoError(t, os.WriteFile(filepath.Join(ma.dir, "services.yaml"), []byte("services: []\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(ma.dir, "more.yaml"), []byte(registryFile), 0o600))
	require.Eventually(t, func() bool { return len(exportNames(a)) == 1 }, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"inventory"}, exportNames(a))

	// A bad file: 422 naming the line and field; nothing changes.
	editFile(t, path, "grace: 45s", "grace: soon")
	code, body = postReload(t, a)
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	require.Contains(t, body, `configuration not reloaded; the running one stays: `+path+`:`)
	require.Contains(t, body, `: error: federation.grace: `)
	require.Equal(t, []string{"inventory"}, exportNames(a))

	// Back to no exports file and the peer as it was: the exports are
	// withdrawn.
	ma.config(t, mb, "")
	code, body = postReload(t, a)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"applied": ["federation.grace", "federation.maxBackoff", "peers[mesh-b].maxServices", "exports.file"], "needsRestart": []}`, body)
	require.Equal(t, 2*time.Minute, a.Peers.MaxBackoff())
	require.Empty(t, exportNames(a))
	a.Catalog.SetExports([]model.Export{inventory()})

	metrics := httpGet(t, a, "/metrics")
	require.Contains(t, metrics, `meshfed_config_reloads_total{result="applied"} 3`)
	require.Contains(t, metrics, `meshfed_config_reloads_total{result="refused"} 1`)

	// Through the client, as meshfed reload does.
	var res ReloadResult
	require.NoError(t, adminClient(a).Post(context.Background(), "/api/v1/reload", &res))
	require.Equal(t, ReloadResult{Applied: []string{}, NeedsRestart: []string{}}, res)
}

// editFile replaces old, which must be there, with new in the file.
func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(b), old)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600))
}

// Fields are named as in the file: peers and map entries by name, a block
// that appears or goes by its own name.
func TestChangedFieldsNamesFieldsAsTheFileDoes(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	old := ma.config(t, mb, "")
	next := ma.config(t, mb, "127.0.0.1:1", "consul: {address: 127.0.0.1:8500, import: {}}\n")
	next.TrustBundles["mesh-c.example"] = next.TrustBundles["mesh-b.example"]
	next.Peers = append(next.Peers, next.Peers[0])
	next.Peers[1].Name = "mesh-c"
	next.Federation.Window = 8
	require.Equal(t, []string{"trustBundles.mesh-c.example", "federation.window", "peers[mesh-b].dial", "peers[mesh-c]", "consul"}, changedFields(old, next))
	require.Empty(t, changedFields(old, ma.config(t, mb, "")))
}

// A registry file broken while the agent runs keeps the last exports and
// shows in the status and the readiness as degraded, with the problem;
// mended, it is healthy again.
func TestBrokenRegistryFileShowsInTheStatus(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	services := filepath.Join(ma.dir, "services.yaml")
	require.NoError(t, os.WriteFile(services, []byte(registryFile), 0o600))
	a := start(t, ma.config(t, mb, "", "exports: {file: services.yaml}\n"))
	// The file is followed once the source gave its first set.
	require.Eventually(t, func() bool { return !a.ExportSource().LastSync.IsZero() }, waitFor, 10*time.Millisecond)
	require.True(t, a.ExportSource().Healthy)

	writeAtomic(t, services, []byte(strings.Replace(registryFile, "protocol: HTTP", "protocol: FOO", 1)))
	require.Eventually(t, func() bool { return !a.ExportSource().Healthy }, waitFor, 10*time.Millisecond)
	require.Contains(t, a.ExportSource().LastError, `services[0].ports[0].protocol: "FOO" is not one of`)
	require.Len(t, a.Degraded(), 1)
	require.Contains(t, a.Degraded()[0], "exports: reading the exports has failed: ")
	require.Len(t, a.Catalog.Exports(), 1, "the last exports stay")

	writeAtomic(t, services, []byte(registryFile))
	require.Eventually(t, func() bool { return a.ExportSource().Healthy }, waitFor, 10*time.Millisecond)
	require.Empty(t, a.Degraded())
}

// A reload removes a peer and adds it back while the agent runs: its
// stream ends and its imports go, and once it is back it is dialed again
// and imported from; the egress gateway follows, and takes a new route
// timeout as soon as it is reloaded.
func TestReloadRemovesAndAddsAPeer(t *testing.T) {
	a, _, path := importingPayments(t)
	imported := func() int { return len(a.Catalog.Imports()) }
	const scope = "egress/mesh-b/payments/http"
	require.Eventually(t, func() bool { return imported() == 1 && slices.Contains(importScopes(a), scope) }, waitFor, 10*time.Millisecond)

	withPeer, err := os.ReadFile(path)
	require.NoError(t, err)
	i := strings.Index(string(withPeer), "peers:\n")
	j := strings.Index(string(withPeer), "xds:\n")
	require.Positive(t, i)
	require.NoError(t, os.WriteFile(path, []byte(string(withPeer[:i])+"peers: []\n"+string(withPeer[j:])), 0o600))
	code, body := postReload(t, a)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"applied": ["peers[mesh-b]"], "needsRestart": []}`, body)
	require.Empty(t, a.Peers.Status())
	require.Eventually(t, func() bool { return imported() == 0 && !slices.Contains(importScopes(a), scope) }, waitFor, 10*time.Millisecond)

	require.NoError(t, os.WriteFile(path, withPeer, 0o600))
	code, body = postReload(t, a)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"applied": ["peers[mesh-b]"], "needsRestart": []}`, body)
	require.Eventually(t, func() bool { return imported() == 1 && slices.Contains(importScopes(a), scope) }, waitFor, 10*time.Millisecond)

	// The egress route timeout applies to the routes at once.
	routeTimeout := func() string {
		for _, r := range a.Cache.Resources(model.Egress, resource.ScopedRouteType) {
			sc := &route.ScopedRouteConfiguration{}
			require.NoError(t, r.Resource.UnmarshalTo(sc))
			routes := sc.GetRouteConfiguration().GetVirtualHosts()[0].GetRoutes()
			// The last route is the plain one; those before carry
			// upgraded streams, which have no timeout.
			return routes[len(routes)-1].GetRoute().GetTimeout().AsDuration().String()
		}
		return ""
	}
	require.Equal(t, "15s", routeTimeout())
	require.NoError(t, os.WriteFile(path, append(withPeer, "gateways:\n  egress: {httpRouteTimeout: 3s}\n"...), 0o600))
	code, body = postReload(t, a)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"applied": ["gateways.egress.httpRouteTimeout"], "needsRestart": []}`, body)
	require.Eventually(t, func() bool { return routeTimeout() == "3s" }, waitFor, 10*time.Millisecond)
}

// importingPayments starts mesh-b exporting payments to mesh-a, and mesh-a
// from its configuration file, dialing mesh-b; it returns mesh-a, mesh-b's
// files and mesh-a's configuration file.
func importingPayments(t *testing.T) (*Agent, mesh, string) {
	t.Helper()
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	b := start(t, mb.config(t, ma, ""))
	b.Catalog.SetExports([]model.Export{{
		Name: "payments", FQDN: "payments.mesh-b.example", Mode: model.Terminate, Consumers: []string{"mesh-a"},
		Ports: []model.ExportPort{{Name: "http", Port: 8080, Protocol: model.HTTP, SNI: model.DefaultSNI(8080, "payments.mesh-b.example"),
			Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: 9080}}}},
	}})
	path := filepath.Join(ma.dir, "meshfed.yaml")
	a := startOperable(t, ma.config(t, mb, b.FederationAddr().String()), path)
	return a, mb, path
}

// A peer removed with its trust bundle is no longer trusted at all: the
// bundle leaves the agent's set (and its status) with the reload, and
// comes back when the peer and its bundle do.
func TestReloadDropsARemovedPeersTrustBundle(t *testing.T) {
	a, mb, path := importingPayments(t)
	imported := func() int { return len(a.Catalog.Imports()) }
	require.Eventually(t, func() bool { return imported() == 1 }, waitFor, 10*time.Millisecond)
	bundles := func() []string {
		var out []string
		for _, s := range a.creds.bundles.States() {
			out = append(out, s.TrustDomain)
		}
		return out
	}
	require.Equal(t, []string{"mesh-a.example", "mesh-b.example"}, bundles())

	withPeer, err := os.ReadFile(path)
	require.NoError(t, err)
	bundleLine := fmt.Sprintf("  mesh-b.example: {file: %s}\n", filepath.Join(mb.dir, "certs", "bundle.pem"))
	require.Contains(t, string(withPeer), bundleLine)
	i := strings.Index(string(withPeer), "peers:\n")
	j := strings.Index(string(withPeer), "xds:\n")
	without := strings.Replace(string(withPeer[:i]), bundleLine, "", 1) + "peers: []\n" + string(withPeer[j:])
	require.NoError(t, os.WriteFile(path, []byte(without), 0o600))
	code, body := postReload(t, a)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"applied": ["trustBundles.mesh-b.example", "peers[mesh-b]"], "needsRestart": []}`, body)
	require.Equal(t, []string{"mesh-a.example"}, bundles())
	_, err = a.creds.bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("mesh-b.example"))
	require.ErrorContains(t, err, `no trust bundle for trust domain "mesh-b.example"`)
	require.Eventually(t, func() bool { return imported() == 0 }, waitFor, 10*time.Millisecond)

	require.NoError(t, os.WriteFile(path, withPeer, 0o600))
	code, body = postReload(t, a)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"applied": ["trustBundles.mesh-b.example", "peers[mesh-b]"], "needsRestart": []}`, body)
	require.Equal(t, []string{"mesh-a.example", "mesh-b.example"}, bundles())
	require.Eventually(t, func() bool { return imported() == 1 }, waitFor, 10*time.Millisecond)
}
