package xds

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
)

// ending is how the server ended a stream: its grpc-status and
// grpc-message.
type ending struct {
	stream uint32
	code   codes.Code
	msg    string
}

// endings reads the server's frames until the connection ends, and sends
// the end of each stream the server ends to out. It answers the server's
// pings, as a client that holds its connections does.
func (c *rawH2) endings(out chan<- ending) {
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	go func() {
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				return
			}
			if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
				c.wmu.Lock()
				err := c.fr.WritePing(true, p.Data)
				c.wmu.Unlock()
				if err != nil {
					return
				}
				continue
			}
			h, ok := f.(*http2.MetaHeadersFrame)
			if !ok || !h.StreamEnded() {
				continue
			}
			e := ending{stream: h.StreamID, code: codes.Unknown}
			for _, f := range h.Fields {
				switch f.Name {
				case "grpc-status":
					n, err := strconv.Atoi(f.Value)
					if err == nil {
						e.code = codes.Code(n)
					}
				case "grpc-message":
					e.msg = f.Value
				}
			}
			out <- e
		}
	}()
}

// memory is what the process has in use, after a collection.
type memory struct{ heap, live, stacks int64 }

func memInUse() memory {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memory{heap: int64(m.HeapInuse), live: int64(m.HeapAlloc), stacks: int64(m.StackInuse)}
}

// attackerEnv makes the test binary, run with it set, open the streams of
// TestRequestlessStreamsAreBounded instead of running tests: the memory
// of the server's process is then the server's own.
const attackerEnv = "MESHFED_XDS_REQUESTLESS_ATTACK"

func TestMain(m *testing.M) {
	if spec := os.Getenv(attackerEnv); spec != "" {
		os.Exit(runAttack(spec))
	}
	os.Exit(m.Run())
}

// attack is what the attacking process does: open Streams streams that
// send no request, PerConn on each connection, connection i as identity
// SVIDs[i%len(SVIDs)]; report the first Endings streams the server ended;
// hold the rest until its standard input ends.
type attack struct {
	Addr, Bundle, Agent       string
	SVIDs                     [][2]string
	Streams, PerConn, Endings int
}

type attackReport struct {
	Conns int
	// Endings counts the streams ended, by "code: message".
	Endings map[string]int
}

// exitT fails the attacking process.
type exitT struct{}

func (exitT) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (exitT) FailNow()                          { os.Exit(2) }

func runAttack(spec string) int {
	var a attack
	require.NoError(exitT{}, json.Unmarshal([]byte(spec), &a))
	agent := spiffeid.RequireFromString(a.Agent)
	bundle, err := x509bundle.Parse(agent.TrustDomain(), []byte(a.Bundle))
	require.NoError(exitT{}, err)
	var tlsCfgs []*tls.Config
	for _, pem := range a.SVIDs {
		svid, err := x509svid.Parse([]byte(pem[0]), []byte(pem[1]))
		require.NoError(exitT{}, err)
		tlsCfgs = append(tlsCfgs, certs.ClientTLSConfig(svid, bundle, tlsconfig.AuthorizeID(agent)))
	}
	ends := make(chan ending, a.Streams)
	rep := attackReport{Endings: map[string]int{}}
	for ; rep.Conns*a.PerConn < a.Streams; rep.Conns++ {
		c := newRawH2(exitT{}, a.Addr, tlsCfgs[rep.Conns%len(tlsCfgs)])
		c.endings(ends)
		for j := 0; j < a.PerConn && rep.Conns*a.PerConn+j < a.Streams; j++ {
			c.open(uint32(2*j + 1))
		}
	}
	// A server that ends fewer streams than expected is reported as it
	// is once it has ended none for a while.
	for n := 0; n < a.Endings; n++ {
		select {
		case end := <-ends:
			rep.Endings[fmt.Sprintf("%s: %s", end.code, end.msg)]++
		case <-time.After(30 * time.Second):
			n = a.Endings
		}
	}
	require.NoError(exitT{}, json.NewEncoder(os.Stdout).Encode(rep))
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// startAttack runs a in a process of its own, and returns its report
// once it has one; stop ends the process, and its connections with it.
func startAttack(t *testing.T, a attack) (rep attackReport, stop func()) {
	t.Helper()
	spec, err := json.Marshal(a)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), attackerEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	stop = func() {
		_ = stdin.Close()
		require.NoError(t, cmd.Wait())
		cancel()
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			stop()
		}
	})
	require.NoError(t, json.NewDecoder(stdout).Decode(&rep))
	return rep, stop
}

// svidPEM issues an SVID of the trust domain to path, as PEM.
func (e *mtlsEnv) svidPEM(t *testing.T, path string) [2]string {
	t.Helper()
	svid, err := e.ca.IssueX509SVID(spiffeid.RequireFromPath(e.agent.TrustDomain(), path), time.Hour)
	require.NoError(t, err)
	cert, key, err := svid.Marshal()
	require.NoError(t, err)
	return [2]string{string(cert), string(key)}
}

// Streams count toward their identity's bound and the server's from
// their start, before any request. With the defaults, 10,000 streams that
// never send a request, from one workload identity or from ten, on 100
// connections, hold config.DefaultMaxStreamsPerIdentity or config.DefaultMaxStreams
// open; each further one ends at once with ResourceExhausted and is
// counted. The server's process grows by under 20 MB and two goroutines
// a held stream, and gets it all back once the connections end.
func TestRequestlessStreamsAreBounded(t *testing.T) {
	const attempts = 10_000
	for _, tc := range []struct {
		name       string
		identities int
		held       int
		refusal    string
		refused    func(*metrics) float64
	}{
		{"one identity", 1, config.DefaultMaxStreamsPerIdentity,
			fmt.Sprintf("xds: spiffe://mesh-a.example/ns/default/sa/w0 has %d streams open, the most it may", config.DefaultMaxStreamsPerIdentity),
			func(m *metrics) float64 { return testutil.ToFloat64(m.overIdentity) }},
		{"ten identities", 10, config.DefaultMaxStreams,
			fmt.Sprintf("xds: the server has %d streams open, the most it may", config.DefaultMaxStreams),
			func(m *metrics) float64 { return testutil.ToFloat64(m.overServer) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first request timeout is TestRequestlessStreamsEnd's:
			// here no stream may end of it.
			e := serveMTLS(t, Config{FirstRequestTimeout: time.Hour})
			m := e.server.clients.metrics
			bundle, err := e.ca.X509Bundle().Marshal()
			require.NoError(t, err)
			a := attack{Addr: e.addr, Bundle: string(bundle), Agent: e.agent.String(),
				Streams: attempts, PerConn: config.DefaultMaxStreamsPerConnection, Endings: attempts - tc.held}
			for i := range tc.identities {
				a.SVIDs = append(a.SVIDs, e.svidPEM(t, fmt.Sprintf("/ns/default/sa/w%d", i)))
			}
			g0, mem0 := runtime.NumGoroutine(), memInUse()

			rep, stop := startAttack(t, a)
			require.Equal(t, map[string]int{"ResourceExhausted: " + tc.refusal: attempts - tc.held}, rep.Endings)
			require.Equal(t, float64(attempts-tc.held), tc.refused(m))
			require.Equal(t, float64(tc.held), testutil.ToFloat64(m.streams))

			g1, mem1 := runtime.NumGoroutine(), memInUse()
			heap, live, stacks := mem1.heap-mem0.heap, mem1.live-mem0.live, (mem1.stacks-mem0.stacks)/raceStackFactor
			t.Logf("%d streams that send no request on %d connections: %d held; the server grew by %d goroutines, %.1f MB of heap in use (%.1f MB live) and %.1f MB of stacks: %.1f MB, %.0f bytes a held stream with its share of the connections",
				attempts, rep.Conns, tc.held, g1-g0, float64(heap)/1e6, float64(live)/1e6, float64(stacks)/1e6, float64(heap+stacks)/1e6, float64(heap+stacks)/float64(tc.held))
			require.Less(t, heap+stacks, int64(20e6))
			require.LessOrEqual(t, g1-g0, 2*tc.held+3*rep.Conns+2)

			stop()
			require.Eventually(t, func() bool { return testutil.ToFloat64(m.streams) == 0 }, time.Minute, 10*time.Millisecond)
			require.Eventually(t, func() bool { return runtime.NumGoroutine() <= g0+5 }, time.Minute, 10*time.Millisecond,
				"goroutines: %d, %d before", runtime.NumGoroutine(), g0)
		})
	}
}

// A stream that sends no request within FirstRequestTimeout ends with
// DeadlineExceeded, state of the world or delta, and is counted; it
// gives its place back, so the bounds admit as many again.
func TestRequestlessStreamsEnd(t *testing.T) {
	const limit = 40
	e := serveMTLS(t, Config{FirstRequestTimeout: 50 * time.Millisecond, MaxStreamsPerIdentity: limit})
	m := e.server.clients.metrics
	g0 := runtime.NumGoroutine()
	for round := 1; round <= 2; round++ {
		c := dialRawH2As(t, e.addr, e.clientAs(t, "/ns/default/sa/workload"))
		ends := make(chan ending, limit)
		c.endings(ends)
		for j := range limit {
			c.openCall(uint32(2*j+1), []string{deltaADS, sotwADS}[j%2])
		}
		for range limit {
			var end ending
			select {
			case end = <-ends:
			case <-time.After(time.Minute):
				t.Fatal("the server ended no stream")
			}
			require.Equal(t, codes.DeadlineExceeded, end.code, "stream %d: %s", end.stream, end.msg)
			require.Equal(t, "xds: the stream sent no request within 50ms", end.msg)
		}
		require.Equal(t, float64(round*limit), testutil.ToFloat64(m.noRequest))
		require.Zero(t, testutil.ToFloat64(m.overIdentity), "every stream of the round was admitted")
		require.Eventually(t, func() bool { return testutil.ToFloat64(m.streams) == 0 }, time.Minute, time.Millisecond)
		require.NoError(t, c.conn.Close())
	}
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= g0+5 }, time.Minute, 10*time.Millisecond,
		"goroutines: %d, %d before", runtime.NumGoroutine(), g0)
}

// fleetRoles makes gw-egress-N egress gateways and gw-ingress-N ingress
// ones.
func fleetRoles(id string) (model.Role, bool) {
	switch {
	case strings.HasPrefix(id, "gw-egress-"):
		return model.Egress, true
	case strings.HasPrefix(id, "gw-ingress-"):
		return model.Ingress, true
	}
	return "", false
}

// sotwStream is a state-of-the-world stream of one kind of xDS.
type sotwStream interface {
	Send(*discovery.DiscoveryRequest) error
	Recv() (*discovery.DiscoveryResponse, error)
}

// The defaults hold the fleet they were sized for: 100 egress gateways
// that share a SPIFFE ID, each with a stream of each of the six kinds of
// xDS it uses without ADS on a connection of its own, and 100 ingress
// gateways of another SPIFFE ID over ADS, are all served; none is
// refused.
func TestDefaultsServeAFleet(t *testing.T) {
	const gateways = 100
	e := serveMTLS(t, Config{NodeRole: fleetRoles})
	m := e.server.clients.metrics
	egress, ingress := e.clientAs(t, "/meshfed/gateway/egress"), e.clientAs(t, "/meshfed/gateway/ingress")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dial := func(cfg *tls.Config) *grpc.ClientConn {
		conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	var served []sotwStream // those the cache has resources for
	for i := range gateways {
		conn := dial(egress)
		node := &core.Node{Id: fmt.Sprintf("gw-egress-%03d", i)}
		for _, open := range []func() (sotwStream, error){
			func() (sotwStream, error) {
				return clusterservice.NewClusterDiscoveryServiceClient(conn).StreamClusters(ctx)
			},
			func() (sotwStream, error) {
				return secretservice.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
			},
			func() (sotwStream, error) {
				return endpointservice.NewEndpointDiscoveryServiceClient(conn).StreamEndpoints(ctx)
			},
			func() (sotwStream, error) {
				return listenerservice.NewListenerDiscoveryServiceClient(conn).StreamListeners(ctx)
			},
			func() (sotwStream, error) { return routeservice.NewRouteDiscoveryServiceClient(conn).StreamRoutes(ctx) },
			func() (sotwStream, error) {
				return routeservice.NewScopedRoutesDiscoveryServiceClient(conn).StreamScopedRoutes(ctx)
			},
		} {
			st, err := open()
			require.NoError(t, err)
			require.NoError(t, st.Send(&discovery.DiscoveryRequest{Node: node}))
			if len(served) < 2*(i+1) {
				served = append(served, st)
			}
		}
		openDelta(t, dial(ingress), fmt.Sprintf("gw-ingress-%03d", i), &discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	}
	for _, st := range served {
		r, err := st.Recv()
		require.NoError(t, err)
		require.NotEmpty(t, r.GetResources())
	}
	require.Eventually(t, func() bool { return len(e.server.Clients()) == 7*gateways }, time.Minute, 10*time.Millisecond)
	for _, c := range []prometheus.Counter{m.overServer, m.overIdentity, m.overNode, m.refused, m.noRequest} {
		require.Zero(t, testutil.ToFloat64(c))
	}
	require.Equal(t, float64(7*gateways), testutil.ToFloat64(m.streams))
}
