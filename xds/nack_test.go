package xds

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot/cache"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// A gateway that rejects everything gets one response per change, not the
// same state again at once after every NACK (a loop that costs the agent a
// core and the gateway its CPU), and the NACK is counted and shown.
func TestRejectingGatewayIsAnsweredOncePerChange(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			e := start(t, []cache.Change{change(testCluster("c0", 1), "c0")})
			node := "egress-sotw"
			if delta {
				node = "egress-delta"
			}
			reject := func(typeURL string, _ []*anypb.Any) error {
				if typeURL == resource.ClusterType {
					return errors.New("refusing every cluster")
				}
				return nil
			}
			c := adsclient.New(adsclient.Options{NodeID: node, Delta: delta, Reject: reject})
			updates := make(chan adsclient.Update, 1024)
			servetest.Start(t, nil, func(ctx context.Context) error { return c.Run(ctx, e.conn, updates) })

			clusterResponses := func() (n int) {
				for {
					select {
					case u := <-updates:
						if u.TypeURL == resource.ClusterType {
							require.EqualError(t, u.Rejected, "refusing every cluster")
							n++
						}
					default:
						return n
					}
				}
			}
			waitNacks := func(n int) {
				t.Helper()
				require.Eventually(t, func() bool { return c.Nacks() >= n }, 20*time.Second, 5*time.Millisecond)
			}
			waitNacks(1)
			const changes = 5
			for i := 1; i <= changes; i++ {
				require.NoError(t, e.cache.Apply(model.Egress, []cache.Change{change(testCluster("c0", int64(i+1)), "c0")}))
				waitNacks(1 + i)
			}
			// Quiet now: a gateway caught in a NACK loop would keep
			// receiving responses here.
			time.Sleep(300 * time.Millisecond)
			require.Equal(t, 1+changes, clusterResponses())
			require.Equal(t, 1+changes, c.Nacks())

			st := e.server.Clients()
			require.Len(t, st, 1)
			var nack *Nack
			for _, ts := range st[0].Types {
				if ts.TypeURL == resource.ClusterType {
					nack = ts.LastNack
				}
			}
			require.NotNil(t, nack)
			require.Equal(t, "refusing every cluster", nack.Reason)
			want := e.cache.Version(model.Egress, resource.ClusterType)
			if delta {
				want = e.cache.DeltaVersion(model.Egress, resource.ClusterType)
			}
			require.Equal(t, want, nack.Version)
		})
	}
}
