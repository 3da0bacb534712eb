package cache

import (
	"fmt"
	"runtime"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshfed/meshfed/model"
)

// BenchmarkDeltaChange measures one cluster change delivered to, and ACKed
// by, every delta watcher of a wildcard CDS subscription, with this cache and
// with go-control-plane's LinearCache. The streams are driven in the
// benchmark goroutine the way go-control-plane's delta server drives them
// (response, then a new watch on ACK), so the figures are the caches' CPU
// without gRPC.
func BenchmarkDeltaChange(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		clusters := make([]*cluster.Cluster, n)
		for i := range clusters {
			clusters[i] = &cluster.Cluster{
				Name:           fmt.Sprintf("outbound|8080||svc-%d.mesh-b.example", i),
				ConnectTimeout: &durationpb.Duration{Seconds: 1},
			}
		}
		for _, watchers := range []int{10, 100} {
			b.Run(fmt.Sprintf("cache=meshfed/resources=%d/watchers=%d", n, watchers), func(b *testing.B) {
				changes := make([]Change, n)
				for i, cl := range clusters {
					changes[i] = Change{TypeURL: resource.ClusterType, Name: cl.Name, Resource: cl}
				}
				before := heap()
				c := New(func(string) (model.Role, bool) { return model.Egress, true }, nil)
				if err := c.Apply(model.Egress, changes); err != nil {
					b.Fatal(err)
				}
				perResource := float64(heap()-before) / float64(n)
				benchDelta(b, c, n, watchers, perResource, func(i int) {
					cl := changedCluster(clusters, i)
					if err := c.Apply(model.Egress, []Change{{TypeURL: resource.ClusterType, Name: cl.Name, Resource: cl}}); err != nil {
						b.Fatal(err)
					}
				})
			})
			b.Run(fmt.Sprintf("cache=linear/resources=%d/watchers=%d", n, watchers), func(b *testing.B) {
				initial := make(map[string]types.Resource, n)
				for _, cl := range clusters {
					initial[cl.Name] = cl
				}
				before := heap()
				c := gcache.NewLinearCache(resource.ClusterType, gcache.WithInitialResources(initial))
				perResource := float64(heap()-before) / float64(n)
				benchDelta(b, c, n, watchers, perResource, func(i int) {
					cl := changedCluster(clusters, i)
					if err := c.UpdateResource(cl.Name, cl); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

func changedCluster(clusters []*cluster.Cluster, i int) *cluster.Cluster {
	cl := clusters[i%len(clusters)]
	return &cluster.Cluster{Name: cl.Name, ConnectTimeout: &durationpb.Duration{Seconds: int64(2 + i)}}
}

// benchDelta reports, besides time, the cache's heap per resource (measured
// by the caller) and per resource and watcher.
func benchDelta(b *testing.B, c gcache.ConfigWatcher, resources, watchers int, perResource float64, change func(i int)) {
	streams := make([]*deltaStream, watchers)
	before := heap()
	for i := range streams {
		streams[i] = newDeltaStream(b, c, fmt.Sprintf("egress-%d", i))
		streams[i].subscribe(resource.ClusterType)
		streams[i].nextAck()
	}
	// What a synced gateway costs, in the cache and in the server's
	// subscription state, which the cache decides the size of.
	perWatcher := float64(heap()-before) / float64(resources*watchers)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		change(i)
		for _, s := range streams {
			if r := s.nextAck(); len(r.Resources) != 1 {
				b.Fatalf("got %d resources, want 1", len(r.Resources))
			}
		}
	}
	b.ReportMetric(perResource, "heapB/resource")
	b.ReportMetric(perWatcher, "heapB/resource/watcher")
}

// heap returns the live heap after a collection, which also keeps the
// setup's garbage out of the measured loop.
func heap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
