package xds

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
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

// clock is a time that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// stoppedClock serves a gateway whose tracker reads a clock that moves
// only when told.
func stoppedClock(clk *clock) func(*Server) {
	return func(s *Server) { s.clients.now = clk.now }
}

func nackOf(typeURL, nonce, msg string) adsRequest {
	return adsRequest{node: &core.Node{Id: egressNode}, typeURL: typeURL, nonce: nonce,
		errorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg}}
}

// lastNack is the last NACK of the egress gateway's clusters the status
// shows, nil when none.
func (e *gatewaysEnv) lastNack(t *testing.T) *Nack {
	t.Helper()
	var nack *Nack
	for _, c := range e.server.Clients() {
		for _, ts := range c.Types {
			if c.NodeID == egressNode && ts.TypeURL == resource.ClusterType && ts.LastNack != nil {
				nack = ts.LastNack
			}
		}
	}
	return nack
}

const rejected = "gateway rejected configuration"

// A NACK counts only when its nonce is one the server sent on that stream
// for that type and awaits an answer to. One with a nonce never sent, sent
// for another type, none, or answered already is ignored: neither shown
// as the gateway's last NACK nor logged as a rejection, and counted in
// meshfed_xds_ignored_nacks_total. Both kinds of stream.
func TestNacksOfUnknownNoncesAreIgnored(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			e := serveGateways(t, ChannelUnix, Config{})
			st := openADS(t, e.dial(t), delta)
			require.NoError(t, st.send(adsRequest{node: &core.Node{Id: egressNode}, typeURL: resource.ClusterType}))
			_, clusters, _, err := st.recv()
			require.NoError(t, err)
			require.NoError(t, st.send(adsRequest{node: &core.Node{Id: egressNode}, typeURL: resource.SecretType}))
			_, secrets, _, err := st.recv()
			require.NoError(t, err)

			ignored := func() float64 {
				return metric(t, e.registry, "meshfed_xds_ignored_nacks_total", "egress", "envoy.config.cluster.v3.Cluster")
			}
			for i, nonce := range []string{"999", secrets, ""} {
				require.NoError(t, st.send(nackOf(resource.ClusterType, nonce, "bogus "+nonce)))
				require.Eventually(t, func() bool { return ignored() == float64(i+1) }, 10*time.Second, time.Millisecond)
			}
			require.Nil(t, e.lastNack(t))
			require.Zero(t, metric(t, e.registry, "meshfed_xds_nacks_total", "egress", "envoy.config.cluster.v3.Cluster"))
			require.Zero(t, e.logs.FilterMessage(rejected).Len())

			require.NoError(t, st.send(nackOf(resource.ClusterType, clusters, "cluster c0: bad")))
			require.Eventually(t, func() bool { return e.lastNack(t) != nil }, 10*time.Second, time.Millisecond)
			require.Equal(t, "cluster c0: bad", e.lastNack(t).Reason)
			require.Equal(t, clusters, e.lastNack(t).Nonce)
			require.Equal(t, 1.0, metric(t, e.registry, "meshfed_xds_nacks_total", "egress", "envoy.config.cluster.v3.Cluster"))
			require.Equal(t, 1, e.logs.FilterMessage(rejected).Len())

			// Answered already.
			require.NoError(t, st.send(nackOf(resource.ClusterType, clusters, "again")))
			require.Eventually(t, func() bool { return ignored() == 4 }, 10*time.Second, time.Millisecond)
			require.Equal(t, "cluster c0: bad", e.lastNack(t).Reason)
			require.Equal(t, 1, e.logs.FilterMessage(rejected).Len())
		})
	}
}

// A NACK's message is cut to 1 KiB on a UTF-8 boundary, ending with a
// marker that says from how many bytes, in the status and the log; no
// metric carries it.
func TestNackMessageIsCut(t *testing.T) {
	e := serveGateways(t, ChannelUnix, Config{})
	st := openADS(t, e.dial(t), true)
	require.NoError(t, st.send(adsRequest{node: &core.Node{Id: egressNode}, typeURL: resource.ClusterType}))
	_, nonce, _, err := st.recv()
	require.NoError(t, err)

	// 1 MiB, a byte then three-byte runes: the cut falls inside one.
	msg := "x" + strings.Repeat("€", 1<<20/3)
	require.NoError(t, st.send(nackOf(resource.ClusterType, nonce, msg)))
	require.Eventually(t, func() bool { return e.lastNack(t) != nil }, 10*time.Second, time.Millisecond)

	want := "x" + strings.Repeat("€", 331) + fmt.Sprintf("… [cut from %d bytes]", len(msg))
	got := e.lastNack(t).Reason
	require.Equal(t, want, got)
	require.LessOrEqual(t, len(got), 1024)
	require.True(t, utf8.ValidString(got))
	logged := e.logs.FilterMessage(rejected).All()
	require.Len(t, logged, 1)
	require.Equal(t, want, logged[0].ContextMap()["error"])
	require.Equal(t, 1.0, metric(t, e.registry, "meshfed_xds_nacks_total", "egress", "envoy.config.cluster.v3.Cluster"))
	families, err := e.registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		require.NotContains(t, f.String(), "€", "metric %s", f.GetName())
	}
}

// The warnings of a stream's NACKs are held back past the first
// nackLogBurst, then one is logged each nackLogEvery, saying how many
// were not; every NACK is counted and the status shows the last. Another
// stream's warnings have their own allowance. The clock does not move
// but when the test moves it.
func TestNackWarningsAreRateLimitedPerStream(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	e := serveGateways(t, ChannelUnix, Config{}, stoppedClock(clk))
	conn := e.dial(t)
	st := openADS(t, conn, true)
	require.NoError(t, st.send(adsRequest{node: &core.Node{Id: egressNode}, typeURL: resource.ClusterType}))
	nacked := 0
	// nackNext NACKs the stream's next cluster response, which a change
	// of the egress clusters sends.
	nackNext := func(st adsStream, changed bool) {
		t.Helper()
		if changed {
			require.NoError(t, e.cache.Apply(model.Egress, []cache.Change{change(testCluster("egress-cluster", int64(nacked+2)), "egress-cluster")}))
		}
		typeURL, nonce, _, err := st.recv()
		require.NoError(t, err)
		require.Equal(t, resource.ClusterType, typeURL)
		nacked++
		require.NoError(t, st.send(nackOf(resource.ClusterType, nonce, fmt.Sprintf("rejection %d", nacked))))
		require.Eventually(t, func() bool {
			return metric(t, e.registry, "meshfed_xds_nacks_total", "egress", "envoy.config.cluster.v3.Cluster") == float64(nacked)
		}, 10*time.Second, time.Millisecond)
	}
	const nacks = 20
	for i := range nacks {
		nackNext(st, i > 0)
	}
	require.Equal(t, nackLogBurst, e.logs.FilterMessage(rejected).Len())
	require.Equal(t, fmt.Sprintf("rejection %d", nacks), e.lastNack(t).Reason)

	clk.add(nackLogEvery)
	nackNext(st, true)
	logged := e.logs.FilterMessage(rejected).All()
	require.Len(t, logged, nackLogBurst+1)
	require.Equal(t, fmt.Sprintf("rejection %d", nacks+1), logged[nackLogBurst].ContextMap()["error"])
	require.Equal(t, int64(nacks-nackLogBurst), logged[nackLogBurst].ContextMap()["nacks_not_logged"])

	other := openADS(t, conn, true)
	require.NoError(t, other.send(adsRequest{node: &core.Node{Id: egressNode}, typeURL: resource.ClusterType}))
	nackNext(other, false)
	require.Equal(t, nackLogBurst+2, e.logs.FilterMessage(rejected).Len(), "the other stream's first NACK is logged")
}
