package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/stretchr/testify/require"
)

// An export withdrawn by its owner stops being reachable from the consumer
// with its next request, and works again once exported again; the
// gateways follow without a restart: the routing scope and the listener
// of its port go, and come back.
func TestWithdrawnExportStopsAndReturnsDelta(t *testing.T) {
	testWithdrawnExport(t, options{})
}

func TestWithdrawnExportStopsAndReturnsSotW(t *testing.T) {
	testWithdrawnExport(t, options{sotw: true})
}

func testWithdrawnExport(t *testing.T, opts options) {
	a, b := federate(t, opts)
	pids := []int{a.egress.Pid(), b.ingress.Pid()}
	call := func(ctx context.Context) error {
		_, err := a.importedHTTP(ctx, "/")
		return err
	}
	require.NoError(t, call(context.Background()))

	b.writeServices(false)
	eventually(t, "the request fails once mesh-b withdrew payments", func(ctx context.Context) error {
		if err := call(ctx); err == nil {
			return errors.New("still answered")
		}
		return nil
	})
	require.Empty(t, a.agent.Catalog.Imports(), "mesh-a no longer imports payments")

	b.writeServices(true)
	eventually(t, "the request works again once mesh-b exported payments again", call)
	require.Equal(t, pids, []int{a.egress.Pid(), b.ingress.Pid()}, "the same Envoy processes")
}

// Envoy keeps serving while its agent restarts, and the agent that comes
// back from its store pushes nothing that changes a listener or a cluster.
func TestAgentRestartChangesNothing(t *testing.T) {
	a, _ := federate(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := gatewayChurn(ctx, t, a)

	stop := make(chan struct{})
	done := make(chan error, 1)
	var calls int
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := a.importedHTTP(ctx, "/during-restart"); err != nil {
				done <- fmt.Errorf("request %d during the restart: %w", calls, err)
				return
			}
			calls++
		}
	}()
	a.restartAgent()
	a.waitImported()
	// Requests go on for a while with the new agent in place.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	require.NoError(t, <-done)
	require.Positive(t, calls)

	require.Equal(t, before, gatewayChurn(ctx, t, a), "listeners and clusters added, modified or removed")
}

// gatewayChurn reads the counters of listeners and clusters Envoy added,
// modified or removed, on both gateways of m.
func gatewayChurn(ctx context.Context, t *testing.T, m *mesh) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, e := range [...]struct {
		role string
		get  func() (map[string]uint64, error)
	}{
		{"egress", func() (map[string]uint64, error) { return churn(ctx, m.egress) }},
		{"ingress", func() (map[string]uint64, error) { return churn(ctx, m.ingress) }},
	} {
		st, err := e.get()
		require.NoError(t, err)
		for k, v := range st {
			out[e.role+" "+k] = v
		}
	}
	return out
}

// An owner's new SNI for a port reaches the consumer's egress at once: the
// routing scope sets it on each request (the cluster, shared by every
// import on the owner's ingress, does not change), and the owner's
// ingress, which no longer knows the old SNI, lets the requests in.
func TestChangedSNIAppliesAtOnceDelta(t *testing.T) { testChangedSNI(t, options{}) }

func TestChangedSNIAppliesAtOnceSotW(t *testing.T) {
	testChangedSNI(t, options{sotw: true})
}

func testChangedSNI(t *testing.T, opts options) {
	a, b := federate(t, opts)
	_, err := a.importedHTTP(context.Background(), "/before-sni-change")
	require.NoError(t, err)
	clusters, err := a.egress.Stats(context.Background(), "cluster_manager.cds.update_success")
	require.NoError(t, err)

	sni := "http.payments.mesh-b.example"
	b.HTTPSNI = sni
	b.writeServices(true)
	old := model.DefaultSNI(b.HTTPPort(), b.FQDN())
	eventually(t, "mesh-b's ingress Envoy knows the new SNI only", func(ctx context.Context) error {
		for _, r := range b.agent.Cache.Resources(model.Ingress, resource.ListenerType) {
			if r.Name == snapshot.IngressTLSName && (!bytes.Contains(r.Resource.GetValue(), []byte(sni)) || bytes.Contains(r.Resource.GetValue(), []byte(old))) {
				return fmt.Errorf("the ingress TLS listener does not route %s alone", sni)
			}
		}
		return configMatches(ctx, b.ingress, b.agent.Cache, model.Ingress, b.sotw)
	})
	eventually(t, "requests cross with the new SNI", func(ctx context.Context) error {
		_, err := a.importedHTTP(ctx, "/after-sni-change")
		return err
	})
	// The cluster is the upstream's; the log names the import by its route.
	eventually(t, "mesh-a's egress logs the request under the import's route", func(context.Context) error {
		for _, l := range accessLog(t, a.egress) {
			if l["path"] == "/after-sni-change" && l["route"] == "egress/mesh-b/payments/http" && strings.HasPrefix(fmt.Sprint(l["cluster"]), "upstream/mesh-b/") {
				return nil
			}
		}
		return fmt.Errorf("no request line of /after-sni-change on route egress/mesh-b/payments/http")
	})
	// And its own request counts, which the shared cluster cannot give.
	const routeStat = "vhost.egress/mesh-b/payments/http.route.egress/mesh-b/payments/http.upstream_rq_total"
	st, err := a.egress.Stats(context.Background(), "^"+regexp.QuoteMeta(routeStat)+"$")
	require.NoError(t, err)
	require.Positive(t, st[routeStat], "the import's route counts its requests")
	after, err := a.egress.Stats(context.Background(), "cluster_manager.cds.update_success")
	require.NoError(t, err)
	require.Equal(t, clusters["cluster_manager.cds.update_success"], after["cluster_manager.cds.update_success"], "no cluster changed")
	warming, err := a.egress.Stats(context.Background(), "cluster_manager.warming_clusters")
	require.NoError(t, err)
	require.Zero(t, warming["cluster_manager.warming_clusters"])
}
