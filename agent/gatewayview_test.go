package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// findGateway is the view of the stream of node of the given kind.
func findGateway(t *testing.T, views []GatewayView, node, stream string) GatewayView {
	t.Helper()
	i := slices.IndexFunc(views, func(v GatewayView) bool { return v.NodeID == node && v.Stream == stream })
	require.NotEqual(t, -1, i, "no %s stream of %s in %+v", stream, node, views)
	return views[i]
}

func typeOf(v GatewayView, typeURL string) GatewayType {
	for _, t := range v.Types {
		if t.TypeURL == typeURL {
			return t
		}
	}
	return GatewayType{}
}

// /api/v1/gateways says per gateway and type what is wanted, what was
// ACKed and whether it is in sync, with the reason of a NACK; the config
// dump is what the agent serves the node, its private keys redacted.
func TestGatewaysAndConfigDump(t *testing.T) {
	_, b := exchanging(t)
	ctx := context.Background()

	delta := connect(t, b.Agent, adsclient.Options{NodeID: "egress-gateway", Delta: true})
	delta.until(t, "all the agent serves", func(s map[string]map[string]*anypb.Any) bool {
		return has(resource.ScopedRouteType, "egress/mesh-a/inventory/http")(s) && inSync(b.Agent, model.Egress)(s)
	})
	connect(t, b.Agent, adsclient.Options{NodeID: "egress-gateway", Reject: func(typeURL string, _ []*anypb.Any) error {
		if typeURL == resource.ListenerType {
			return errors.New("listener egress/8080: address already in use")
		}
		return nil
	}})
	connect(t, b.Agent, adsclient.Options{NodeID: "stranger", Delta: true})

	var views []GatewayView
	require.Eventually(t, func() bool {
		views = nil
		require.NoError(t, adminClient(b.Agent).Get(ctx, "/api/v1/gateways", &views))
		if len(views) != 3 {
			return false
		}
		d := findGateway(t, views, "egress-gateway", "delta")
		s := findGateway(t, views, "egress-gateway", "sotw")
		for _, typ := range adsclient.Types {
			if typeOf(d, typ).State != Synced {
				return false
			}
		}
		return typeOf(s, resource.ListenerType).State == Nacked && typeOf(s, resource.ClusterType).State == Synced
	}, 20*time.Second, 20*time.Millisecond, "gateways: %+v", views)

	d := findGateway(t, views, "egress-gateway", "delta")
	require.Equal(t, "egress", d.Role)
	require.Equal(t, "unix", d.Channel)
	require.Len(t, d.Types, len(adsclient.Types))
	clusters := typeOf(d, resource.ClusterType)
	require.Equal(t, b.Cache.DeltaVersion(model.Egress, resource.ClusterType), clusters.WantedVersion)
	require.Equal(t, clusters.WantedVersion, clusters.AckedVersion)
	require.Nil(t, clusters.LastNack)

	s := findGateway(t, views, "egress-gateway", "sotw")
	listeners := typeOf(s, resource.ListenerType)
	require.Equal(t, b.Cache.Version(model.Egress, resource.ListenerType), listeners.WantedVersion)
	require.Empty(t, listeners.AckedVersion)
	require.Equal(t, "listener egress/8080: address already in use", listeners.LastNack.Reason)
	require.Equal(t, listeners.WantedVersion, listeners.LastNack.Version)
	sc := typeOf(s, resource.ClusterType)
	require.Equal(t, b.Cache.Version(model.Egress, resource.ClusterType), sc.AckedVersion)

	stranger := findGateway(t, views, "stranger", "delta")
	require.Equal(t, "unknown", stranger.Role)
	for _, typ := range stranger.Types {
		require.Equal(t, Unserved, typ.State, typ.TypeURL)
		require.Empty(t, typ.WantedVersion)
	}

	// The config dump: Envoy's shape, proto field names, what the cache
	// serves with the delta stream's versions, keys redacted.
	body := httpGet(t, b.Agent, "/api/v1/gateways/egress-gateway/config_dump")
	require.NotContains(t, body, "PRIVATE KEY")
	require.Contains(t, body, `"dynamic_active_clusters"`)
	var dump adminv3.ConfigDump
	require.NoError(t, protojson.Unmarshal([]byte(body), &dump))
	require.Len(t, dump.Configs, 5)
	var cds adminv3.ClustersConfigDump
	require.NoError(t, dump.Configs[0].UnmarshalTo(&cds))
	served := b.Cache.Resources(model.Egress, resource.ClusterType)
	require.Len(t, cds.DynamicActiveClusters, len(served))
	for i, r := range served {
		got := cds.DynamicActiveClusters[i]
		require.Equal(t, r.Version, got.VersionInfo, r.Name)
		if diff := cmp.Diff(r.Resource, got.Cluster, protocmp.Transform()); diff != "" {
			t.Fatalf("cluster %s (-served +dump):\n%s", r.Name, diff)
		}
	}
	var sds adminv3.SecretsConfigDump
	require.NoError(t, dump.Configs[4].UnmarshalTo(&sds))
	redactedKeys := 0
	for _, ds := range sds.DynamicActiveSecrets {
		var sec tlsv3.Secret
		require.NoError(t, ds.Secret.UnmarshalTo(&sec))
		if k := sec.GetTlsCertificate().GetPrivateKey(); k != nil {
			require.Equal(t, "[redacted]", k.GetInlineString(), ds.Name)
			redactedKeys++
		}
	}
	require.Equal(t, 1, redactedKeys, "the egress SVID")

	// One part only; a part that does not exist is a bad request.
	require.NoError(t, protojson.Unmarshal([]byte(httpGet(t, b.Agent, "/api/v1/gateways/egress-gateway/config_dump?type=clusters")), &dump))
	require.Len(t, dump.Configs, 1)
	require.Equal(t, "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", dump.Configs[0].TypeUrl)
	err := adminClient(b.Agent).Get(ctx, "/api/v1/gateways/egress-gateway/config_dump?type=clusterz", nil)
	require.ErrorContains(t, err, `answered GET /api/v1/gateways/egress-gateway/config_dump?type=clusterz with 400 Bad Request: type: "clusterz" is not clusters, endpoints, listeners, scopedRoutes or secrets: bad request`)

	// A node id that is not connected: 404, and why.
	resp, err := http.Get("http://" + b.AdminAddr().String() + "/api/v1/gateways/nobody/config_dump")
	require.NoError(t, err)
	defer resp.Body.Close()
	nf, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.JSONEq(t, `{"error": "no gateway with node id \"nobody\" is connected: not found"}`, string(nf))
	err = adminClient(b.Agent).Get(ctx, "/api/v1/gateways/stranger/config_dump", nil)
	require.ErrorContains(t, err, `answered GET /api/v1/gateways/stranger/config_dump with 404 Not Found: node id "stranger" is not in gateways.egress.nodeIds or gateways.ingress.nodeIds: it is served nothing: not found`)
}
