package snapshot_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/snapshottest"
)

func importChange(svc model.Service) snapshot.ImportChange {
	imp := snapshottest.Import(svc)
	return snapshot.ImportChange{Key: model.ImportKey(imp), Import: &imp}
}

func exportChange(exp *model.Export) snapshot.ExportChange {
	return snapshot.ExportChange{Key: model.ExportKey(exp.Name), Export: exp}
}

var (
	testSecrets  = snapshottest.Secrets
	testSettings = snapshottest.Settings
	service      = snapshottest.Service
)

// The same changes give the same result, byte for byte and in the same
// order: what reaches the cache (and the restart test's versions) does not
// depend on map order.
func TestTranslatorIsDeterministic(t *testing.T) {
	secrets := testSecrets(t)
	var ch snapshot.Changes
	ch.Secrets = &secrets
	ch.Ports = map[string]uint32{}
	for i := range 40 {
		proto := []model.Protocol{model.HTTP, model.TCP, model.GRPC, model.HTTP2}[i%4]
		svc := service(fmt.Sprintf("svc-%02d", i), proto, uint32(8000+i%3), fmt.Sprintf("10.0.0.%d", i))
		ch.Imports = append(ch.Imports, importChange(svc))
		ch.Ports[snapshot.EgressKey("mesh-b", svc.Name, "p")] = uint32(21000 + i)
	}
	first := snapshot.NewTranslator(testSettings()).Apply(ch)
	for range 5 {
		again := snapshot.NewTranslator(testSettings()).Apply(ch)
		require.Empty(t, cmp.Diff(first, again, protocmp.Transform()))
	}
}

func TestTranslatorPortsOfRejectedVersions(t *testing.T) {
	secrets := testSecrets(t)
	tr := snapshot.NewTranslator(testSettings())
	p, q := snapshot.EgressKey("mesh-b", "db", "p"), snapshot.EgressKey("mesh-b", "db", "q")
	db := service("db", model.TCP, 5432, "10.0.0.1")
	res := tr.Apply(snapshot.Changes{Secrets: &secrets, Imports: []snapshot.ImportChange{importChange(db)}, Ports: map[string]uint32{p: 21000}})
	require.Empty(t, res.Rejected)
	require.Equal(t, []string{p}, res.Held)

	// A second instance, while mesh-b's bundle is gone: the new version
	// fails, the old one keeps its port and nothing is freed.
	noBundle := testSecrets(t)
	delete(noBundle.Bundles, "mesh-b.example")
	db.Instances = append(db.Instances, model.Instance{ID: "q", Protocol: model.TCP, Port: 5433, SNI: model.DefaultSNI(5433, db.FQDN)})
	res = tr.Apply(snapshot.Changes{Secrets: &noBundle, Imports: []snapshot.ImportChange{importChange(db)}, Ports: map[string]uint32{p: 21000, q: 21001}})
	require.Len(t, res.Rejected, 1)
	require.Empty(t, res.Held)
	require.Empty(t, res.Freed)
	require.True(t, tr.Served(importChange(db).Key), "the last good version stays")

	// Deleted while waiting: both the port it held and the one kept for
	// the rejected version are freed.
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{{Key: importChange(db).Key}}})
	require.Equal(t, []string{p, q}, res.Freed)
	require.False(t, tr.Served(importChange(db).Key))
}

// A server name is freed with its export: the export refused for it is
// served once the other is gone, and an export's own update never clashes
// with itself.
func TestTranslatorServerNamesFollowTheirExport(t *testing.T) {
	in, err := snapshottest.LoadInput("testdata/bad/sni-clash.yaml")
	require.NoError(t, err)
	tr := snapshot.NewTranslator(in.Settings)
	orders, shop := exportChanges(in, false, func(i int) bool { return i == 0 }), exportChanges(in, false, func(i int) bool { return i == 1 })
	res := tr.Apply(snapshot.Changes{Secrets: &in.Secrets, Exports: slices.Concat(orders, shop)})
	require.Len(t, res.Rejected, 1)

	res = tr.Apply(snapshot.Changes{Exports: orders})
	require.Empty(t, res.Rejected, "orders keeps its own name")
	res = tr.Apply(snapshot.Changes{Exports: exportChanges(in, true, func(i int) bool { return i == 0 })})
	require.Empty(t, res.Rejected)
	res = tr.Apply(snapshot.Changes{Exports: shop})
	require.Empty(t, res.Rejected, "the name is free")
}

// A service's change touches its own routing scope only, never the HTTP
// listener it shares with the others; the listener goes with the last
// service on its port, and a new input (a stream idle timeout) sets it
// again.
func TestTranslatorHTTPListenerFollowsItsPort(t *testing.T) {
	secrets := testSecrets(t)
	tr := snapshot.NewTranslator(testSettings())
	web, api := service("web", model.HTTP, 8080, "10.0.0.1"), service("api", model.HTTP, 8080, "10.0.0.2")
	res := tr.Apply(snapshot.Changes{Secrets: &secrets, Imports: []snapshot.ImportChange{importChange(web), importChange(api)}})
	require.Contains(t, changed(res, model.Egress), "set Listener egress/http/8080")

	old := serviceUpstream(t, secrets, web)
	web.Endpoints[0].Address = "10.0.0.3"
	web.SANs = []string{"spiffe://mesh-b.example/web"}
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{importChange(web)}})
	require.ElementsMatch(t, []string{
		"del Cluster " + old,
		"set Cluster " + serviceUpstream(t, secrets, web),
		"set ScopedRouteConfiguration egress/mesh-b/web/p",
	}, changed(res, model.Egress))

	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{{Key: importChange(web).Key}}})
	require.NotContains(t, changed(res, model.Egress), "del Listener egress/http/8080", "api is still on the port")
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{{Key: importChange(api).Key}}})
	require.Contains(t, changed(res, model.Egress), "del Listener egress/http/8080")

	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{importChange(api)}})
	require.Contains(t, changed(res, model.Egress), "set Listener egress/http/8080")
	in := testSettings()
	in.StreamIdleTimeout = 42 * time.Second
	tr.SetSettings(in)
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{importChange(api)}})
	require.Contains(t, changed(res, model.Egress), "set Listener egress/http/8080")
}

// serviceUpstream is the cluster of the one instance of svc's import.
func serviceUpstream(t *testing.T, secrets snapshot.Secrets, svc model.Service) string {
	t.Helper()
	sr := snapshot.EgressResources(testSettings(), secrets, snapshottest.Import(svc), nil)
	require.Len(t, sr.Clusters, 1)
	return sr.Clusters[0].GetName()
}

// Imports on one upstream share its cluster: it comes with the first,
// stays while one holds it, whatever the others do, and goes with the
// last.
func TestTranslatorSharedUpstream(t *testing.T) {
	secrets := testSecrets(t)
	tr := snapshot.NewTranslator(testSettings())
	web, api := service("web", model.HTTP, 8080, "10.0.0.1"), service("api", model.HTTP, 8080, "10.0.0.1")
	up := serviceUpstream(t, secrets, web)
	require.Equal(t, up, serviceUpstream(t, secrets, api))

	res := tr.Apply(snapshot.Changes{Secrets: &secrets, Imports: []snapshot.ImportChange{importChange(web)}})
	require.Contains(t, changed(res, model.Egress), "set Cluster "+up)
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{importChange(api)}})
	require.Empty(t, res.Rejected)

	// web moves to another upstream: api keeps the cluster.
	web.Endpoints[0].Address = "10.0.0.2"
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{importChange(web)}})
	require.ElementsMatch(t, []string{
		"set Cluster " + serviceUpstream(t, secrets, web),
		"set ScopedRouteConfiguration egress/mesh-b/web/p",
	}, changed(res, model.Egress))

	// web comes back, and the cluster it shares with api is not sent
	// again, until the settings change.
	web.Endpoints[0].Address = "10.0.0.1"
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{importChange(web)}})
	require.ElementsMatch(t, []string{
		"del Cluster " + serviceUpstream(t, secrets, service("x", model.HTTP, 8080, "10.0.0.2")),
		"set ScopedRouteConfiguration egress/mesh-b/web/p",
	}, changed(res, model.Egress))
	tr.SetSettings(testSettings())
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{importChange(web), importChange(api)}})
	require.Equal(t, 1, strings.Count(strings.Join(changed(res, model.Egress), "\n"), "set Cluster "+up))

	// api goes, then web: the cluster goes with the last.
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{{Key: importChange(api).Key}}})
	require.Equal(t, []string{"del ScopedRouteConfiguration egress/mesh-b/api/p"}, changed(res, model.Egress))
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{{Key: importChange(web).Key}}})
	require.Contains(t, changed(res, model.Egress), "del Cluster "+up)
}

// changed lists a result's changes of role as "set|del Type name", sorted.
func changed(res snapshot.Result, role model.Role) []string {
	var out []string
	for _, c := range res.Changes[role] {
		op := "del"
		if c.Resource != nil {
			op = "set"
		}
		out = append(out, op+" "+c.TypeURL[strings.LastIndexByte(c.TypeURL, '.')+1:]+" "+c.Name)
	}
	slices.Sort(out)
	return out
}

// An export's endpoints are a resource of their own: changing them sends
// that, and leaves the ingress listeners, which hold every exported SNI,
// as they are; a new export sends both listeners.
func TestTranslatorExportEndpointsLeaveTheIngressListeners(t *testing.T) {
	secrets := testSecrets(t)
	tr := snapshot.NewTranslator(testSettings())
	exp := model.Export{Name: "inventory", FQDN: "inventory.mesh-a.example", Mode: model.Terminate, Consumers: []string{"mesh-b"},
		Ports: []model.ExportPort{{Name: "tcp", Port: 7000, Protocol: model.TCP, SNI: "inventory.mesh-a.example", Endpoints: []model.LocalEndpoint{{Address: "10.0.0.1", Port: 7000}}}}}
	res := tr.Apply(snapshot.Changes{Secrets: &secrets, Exports: []snapshot.ExportChange{exportChange(&exp)}})
	require.Subset(t, changed(res, model.Ingress), []string{"set Listener ingress/router", "set Listener ingress/tls"})

	// The export's own resources are set again (the cache sends only
	// those whose bytes changed), the listeners not.
	exp.Ports[0].Endpoints[0].Address = "10.0.0.2"
	res = tr.Apply(snapshot.Changes{Exports: []snapshot.ExportChange{exportChange(&exp)}})
	require.Contains(t, changed(res, model.Ingress), "set ClusterLoadAssignment ingress/inventory/tcp")
	require.NotContains(t, changed(res, model.Ingress), "set Listener ingress/tls")
	require.NotContains(t, changed(res, model.Ingress), "set Listener ingress/router")

	other := exp
	other.Name, other.Ports = "orders", []model.ExportPort{{Name: "tcp", Port: 7001, Protocol: model.TCP, SNI: "orders.mesh-a.example", Endpoints: exp.Ports[0].Endpoints}}
	res = tr.Apply(snapshot.Changes{Exports: []snapshot.ExportChange{exportChange(&other)}})
	require.Subset(t, changed(res, model.Ingress), []string{"set Listener ingress/router", "set Listener ingress/tls"})
}

func consulSettings() snapshot.Settings {
	in := testSettings()
	in.Consul = &snapshot.Consul{Datacenter: "dc1", Domain: "consul", NameTemplate: "{name}", ConnectPort: 20443, IngressIdentity: "meshfed-ingress"}
	return in
}

// Two imports whose Consul name is one (the template leaves the peer
// out): the first keeps it, the second is served by its FQDN alone, and
// takes the name once the first is gone and it changes.
func TestTranslatorConsulNameHasOneImport(t *testing.T) {
	secrets := testSecrets(t)
	tr := snapshot.NewTranslator(consulSettings())
	web := service("web", model.HTTP, 8080, "10.0.0.1")
	other := snapshot.ImportChange{Key: model.Key{Kind: model.KindImport, Peer: "mesh-b", ID: "web-2"},
		Import: &model.Import{Peer: "mesh-b", ResourceID: "web-2", LocalFQDN: "web2.mesh-b.example", Service: service("web", model.HTTP, 8080, "10.0.0.2")}}
	other.Import.Service.FQDN = "web2.mesh-b.example"
	res := tr.Apply(snapshot.Changes{Secrets: &secrets, Imports: []snapshot.ImportChange{importChange(web), other}})
	require.Empty(t, res.Rejected)
	scopes := changed(res, model.Egress)
	require.Contains(t, scopes, "set ScopedRouteConfiguration consul/mesh-b/web/p")
	require.Contains(t, scopes, "set ScopedRouteConfiguration egress/mesh-b/web-2/p")
	require.NotContains(t, scopes, "set ScopedRouteConfiguration consul/mesh-b/web-2/p")

	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{{Key: importChange(web).Key}}})
	require.Contains(t, changed(res, model.Egress), "del ScopedRouteConfiguration consul/mesh-b/web/p")
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{other}})
	require.Contains(t, changed(res, model.Egress), "set ScopedRouteConfiguration consul/mesh-b/web-2/p")
}

// An import waits for the Consul leaf of its name before Connect sidecars
// may reach it: once the leaf is among the certificates, it is translated
// again and the egress Connect listener takes its SNI.
func TestTranslatorConnectRouteWaitsForItsLeaf(t *testing.T) {
	secrets := testSecrets(t)
	secrets.Consul = snapshot.ConsulSecrets{TrustDomain: "1111.consul", Roots: secrets.Bundles["mesh-a.example"]}
	tr := snapshot.NewTranslator(consulSettings())
	db := service("db", model.TCP, 5432, "10.0.0.1")
	res := tr.Apply(snapshot.Changes{Secrets: &secrets, Imports: []snapshot.ImportChange{importChange(db)}, Ports: map[string]uint32{snapshot.EgressKey("mesh-b", "db", "p"): 21000}})
	require.Empty(t, res.Rejected)
	require.NotContains(t, changed(res, model.Egress), "set Listener egress/connect")

	next := secrets
	next.Consul.Leaves = map[string]snapshot.SVID{"db": secrets.SVIDs[model.Egress]}
	require.NotContains(t, tr.Retry(next), importChange(db).Key, "its callers are not known yet")
	next.Consul.Callers = map[string]snapshot.ConsulCallers{"db": {Allow: true}}
	retry := tr.Retry(next)
	require.Contains(t, retry, importChange(db).Key)
	res = tr.Apply(snapshot.Changes{Secrets: &next, Imports: []snapshot.ImportChange{importChange(db)}, Ports: map[string]uint32{snapshot.EgressKey("mesh-b", "db", "p"): 21000}})
	require.Empty(t, res.Rejected)
	require.Subset(t, changed(res, model.Egress), []string{"set Listener egress/connect", "set Secret meshfed/consul-leaf/db", "set Secret meshfed/consul-callers/db"})
	require.NotContains(t, tr.Retry(next), importChange(db).Key, "it waits no more")
}

// What the gateways serve of each import is in the result: a new version
// with the ports its instances are reached on, nothing for a rejected one
// (the last good one stays served), and its end when deleted.
func TestTranslatorTellsWhatItServes(t *testing.T) {
	secrets := testSecrets(t)
	tr := snapshot.NewTranslator(testSettings())
	db := service("db", model.TCP, 5432, "10.0.0.1")
	db.Instances = append(db.Instances, model.Instance{ID: "web", Protocol: model.HTTP, Port: 8080})
	p := snapshot.EgressKey("mesh-b", "db", "p")
	res := tr.Apply(snapshot.Changes{Secrets: &secrets, Imports: []snapshot.ImportChange{importChange(db)}, Ports: map[string]uint32{p: 21000}})
	require.Len(t, res.Served, 1)
	require.Equal(t, importChange(db).Key, res.Served[0].Key)
	require.Equal(t, "db.mesh-b.example", res.Served[0].Import.LocalFQDN)
	require.Equal(t, map[string]uint32{"p": 21000, "web": 8080}, res.Served[0].Ports)

	noBundle := testSecrets(t)
	delete(noBundle.Bundles, "mesh-b.example")
	res = tr.Apply(snapshot.Changes{Secrets: &noBundle, Imports: []snapshot.ImportChange{importChange(db)}, Ports: map[string]uint32{p: 21000}})
	require.Len(t, res.Rejected, 1)
	require.Empty(t, res.Served)

	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{{Key: importChange(db).Key}}})
	require.Equal(t, []snapshot.ServedImport{{Key: importChange(db).Key}}, res.Served)
	res = tr.Apply(snapshot.Changes{Imports: []snapshot.ImportChange{{Key: importChange(db).Key}}})
	require.Empty(t, res.Served, "it was served no more already")
}

// The egress holds a peer's bundle while the settings name the peer: a
// reload that removes the peer removes its bundle, one that adds it back
// sets it, without waiting for the certificates to change.
func TestTranslatorPeerBundlesFollowTheSettings(t *testing.T) {
	secrets := testSecrets(t)
	tr := snapshot.NewTranslator(testSettings())
	res := tr.Apply(snapshot.Changes{Secrets: &secrets})
	require.Contains(t, changed(res, model.Egress), "set Secret meshfed/bundle/mesh-b_2eexample")

	without := testSettings()
	without.Peers = nil
	tr.SetSettings(without)
	res = tr.Apply(snapshot.Changes{})
	require.Contains(t, changed(res, model.Egress), "del Secret meshfed/bundle/mesh-b_2eexample")

	tr.SetSettings(testSettings())
	res = tr.Apply(snapshot.Changes{})
	require.Contains(t, changed(res, model.Egress), "set Secret meshfed/bundle/mesh-b_2eexample")
	res = tr.Apply(snapshot.Changes{})
	require.Empty(t, changed(res, model.Egress), "the secrets are set once per change of the settings")
}
