package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	fortiolog "fortio.org/log"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/validate"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/store"
	"github.com/meshfed/meshfed/xds"
)

// The data path: a workload of mesh-a calls a service mesh-b exports,
// directly and through mesh-a's egress and mesh-b's ingress Envoy (each
// from its envoy-configs bootstrap, one worker thread, served by
// meshfed's runner, cache and xDS server in its role), with mutual TLS
// between the two gateways as in production; requests per second and
// latency over HTTP at each concurrency, and bulk throughput over TCP,
// direct and through measured one after the other in the same run so
// that their ratio says what the gateways cost on this machine.

// DataPathReport is the data path's measurement.
type DataPathReport struct {
	// HTTP are the HTTP loads, by concurrency.
	HTTP []*HTTPLoad `json:"http"`
	// TCP is the bulk transfer over one TCP connection.
	TCP *TCPBulk `json:"tcp,omitempty"`
	// SecondsEach is how long each load and each transfer ran.
	SecondsEach float64 `json:"secondsEach"`
	// UpdateRejected and InitFetchTimeout are the two Envoys' counters at
	// the end, summed.
	UpdateRejected   uint64   `json:"updateRejected"`
	InitFetchTimeout uint64   `json:"initFetchTimeout"`
	Errors           []string `json:"errors,omitempty"`
	Failed           string   `json:"failed,omitempty"`
	Seconds          float64  `json:"seconds"`
}

// HTTPLoad is one closed-loop HTTP/1.1 load at a concurrency (connections,
// each keeping one request in flight), direct and through both gateways.
type HTTPLoad struct {
	Concurrency int          `json:"concurrency"`
	Direct      *HTTPFigures `json:"direct"`
	Through     *HTTPFigures `json:"through"`
}

// HTTPFigures are what one load measured.
type HTTPFigures struct {
	// Requests answered 200, and the others (any other status, or a
	// connection error).
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	RPS      float64 `json:"requestsPerSecond"`
	P50Ms    float64 `json:"p50Ms"`
	P99Ms    float64 `json:"p99Ms"`
}

// TCPBulk is one connection writing as fast as it can to a sink, direct
// and through both gateways, in MB (10^6 bytes) per second: the bytes the
// sink counted, over the time from the first write until its count came
// back after the half-close.
type TCPBulk struct {
	DirectMBps   float64 `json:"directMBps"`
	ThroughMBps  float64 `json:"throughMBps"`
	DirectBytes  int64   `json:"directBytes"`
	ThroughBytes int64   `json:"throughBytes"`
}

// dataPathConcurrency are the HTTP loads' concurrencies.
var dataPathConcurrency = []int{1, 32}

// The service of the data path, as mesh-b exports it and mesh-a imports it.
const (
	dataPathService  = "echo"
	dataPathHTTPPort = 8080
	dataPathTCPPort  = 5432
)

// dataPathBody is the backend's answer: a small JSON-sized reply, so that
// the figures are those of the request's path rather than of bulk bytes.
var dataPathBody = make([]byte, 128)

func runDataPath(ctx context.Context, opts *Options, p *pki) *DataPathReport {
	rep := &DataPathReport{SecondsEach: opts.DataPath.Seconds()}
	start := time.Now()
	progress := func(format string, args ...any) {
		fmt.Fprintf(opts.Progress, "[data path] %s\n", fmt.Sprintf(format, args...))
	}
	if err := measureDataPath(ctx, opts, p, rep, progress); err != nil {
		rep.Failed = err.Error()
		progress("FAILED: %v", err)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep
}

// dataPathEnv is the two meshes' gateways and the backends.
type dataPathEnv struct {
	opts *Options
	// egressIP and ingressIP are loopback addresses of their own, as the
	// gateways of two hosts: two Envoys of one user on one address and
	// port would share its connections (SO_REUSEPORT).
	egressIP, ingressIP string
	ingressPort         uint32
	httpBackend         *http.Server
	httpAddr            string
	sink                *tcpSink
	egress, ingress     *envoyFleet
	// tcpPort is the egress listener of the imported TCP port.
	tcpPort uint32
}

func measureDataPath(parent context.Context, opts *Options, p *pki, rep *DataPathReport, progress func(string, ...any)) (err error) {
	x := &dataPathEnv{opts: opts}
	x.egressIP, x.ingressIP = loopbackPair()
	if x.ingressPort, err = freePort(x.ingressIP); err != nil {
		return err
	}
	if err := x.startBackends(); err != nil {
		return err
	}
	defer x.stopBackends()
	ctx := parent
	ingressMesh, stopIngress, err := x.serve(ctx, p, model.Ingress)
	if err != nil {
		return err
	}
	defer stopIngress()
	egressMesh, stopEgress, err := x.serve(ctx, p, model.Egress)
	if err != nil {
		return err
	}
	defer stopEgress()
	port, ok := egressMesh.sys.port(peerName, dataPathService, "tcp")
	if !ok {
		return errors.New("the imported TCP port has no egress listener port")
	}
	x.tcpPort = port
	defer func() {
		for _, f := range []*envoyFleet{x.egress, x.ingress} {
			if f != nil {
				closeFleet(f, "envoy", &err)
			}
		}
	}()
	if x.ingress, err = x.startEnvoy(ingressMesh, "ingress", ingressNode); err != nil {
		return err
	}
	if x.egress, err = x.startEnvoy(egressMesh, "egress", "egress-gateway"); err != nil {
		return err
	}
	progress("gateways ready: egress %s (HTTP :%d, TCP :%d), ingress %s", x.egressIP, dataPathHTTPPort, x.tcpPort, net.JoinHostPort(x.ingressIP, strconv.Itoa(int(x.ingressPort))))

	// fortio logs every run at info level.
	prev := fortiolog.SetLogLevelQuiet(fortiolog.Error)
	defer fortiolog.SetLogLevelQuiet(prev)
	for _, c := range dataPathConcurrency {
		load := &HTTPLoad{Concurrency: c}
		if load.Direct, err = x.httpLoad(ctx, c, false); err != nil {
			return err
		}
		if load.Through, err = x.httpLoad(ctx, c, true); err != nil {
			return err
		}
		rep.HTTP = append(rep.HTTP, load)
		progress("HTTP, concurrency %d: direct %.0f rps (p50 %.2f ms, p99 %.2f ms), through both gateways %.0f rps (p50 %.2f ms, p99 %.2f ms); %d and %d errors",
			c, load.Direct.RPS, load.Direct.P50Ms, load.Direct.P99Ms, load.Through.RPS, load.Through.P50Ms, load.Through.P99Ms, load.Direct.Errors, load.Through.Errors)
		for _, f := range []*HTTPFigures{load.Direct, load.Through} {
			if f.Errors > 0 {
				rep.Errors = append(rep.Errors, fmt.Sprintf("HTTP, concurrency %d: %d of %d requests failed", c, f.Errors, f.Errors+f.Requests))
			}
		}
	}
	bulk := &TCPBulk{}
	if bulk.DirectBytes, bulk.DirectMBps, err = x.tcpBulk(ctx, x.sink.addr()); err != nil {
		return fmt.Errorf("TCP direct: %w", err)
	}
	if bulk.ThroughBytes, bulk.ThroughMBps, err = x.tcpBulk(ctx, net.JoinHostPort(x.egressIP, strconv.Itoa(int(x.tcpPort)))); err != nil {
		return fmt.Errorf("TCP through the gateways: %w", err)
	}
	rep.TCP = bulk
	progress("TCP bulk: direct %.0f MB/s, through both gateways %.0f MB/s", bulk.DirectMBps, bulk.ThroughMBps)
	for _, f := range []*envoyFleet{x.egress, x.ingress} {
		fig := &EnvoyFigures{}
		if err := f.figures(ctx, fig); err != nil {
			return err
		}
		rep.UpdateRejected += fig.UpdateRejected
		rep.InitFetchTimeout += fig.InitFetchTimeout
	}
	return nil
}

// loopbackPair returns two loopback addresses of their own, away from the
// 127.64/10 range the end-to-end tests draw theirs from.
func loopbackPair() (string, string) {
	n := rand.N(1 << 14)
	return fmt.Sprintf("127.%d.%d.1", 128+n>>8, n&0xff), fmt.Sprintf("127.%d.%d.2", 128+n>>8, n&0xff)
}

// freePort is a TCP port free on ip now.
func freePort(ip string) (uint32, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port), nil
}

func (x *dataPathEnv) startBackends() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	x.httpAddr = l.Addr().String()
	x.httpBackend = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(dataPathBody)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = x.httpBackend.Serve(l) }()
	x.sink, err = startSink()
	return err
}

func (x *dataPathEnv) stopBackends() {
	if x.httpBackend != nil {
		_ = x.httpBackend.Close()
	}
	if x.sink != nil {
		x.sink.close()
	}
}

// servedMesh is one mesh's system and its xDS server.
type servedMesh struct {
	sys *meshfedSystem
	xr  *xdsRun
}

// serve starts meshfed's system in role on its catalog (mesh-b's export,
// or mesh-a's import of it) and its xDS server; stop ends both.
func (x *dataPathEnv) serve(ctx context.Context, p *pki, role model.Role) (_ *servedMesh, stop func(), err error) {
	// A group of its own: stop waits for this mesh's server only.
	wg := &sync.WaitGroup{}
	st, closeStore, err := openStore(x.opts.StoreDir)
	if err != nil {
		return nil, nil, err
	}
	in, cat, err := x.mesh(p, st, role)
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	sys, err := newMeshfed(systemEnv{catalog: cat, store: st, input: in, holdoff: x.opts.Holdoff, role: role})
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	sctx, stopSys, err := startSystem(ctx, sys, wg)
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	xr, err := startXDS(sctx, wg, sys.cache(), role)
	if err != nil {
		stopSys()
		closeStore()
		return nil, nil, err
	}
	return &servedMesh{sys: sys, xr: xr}, func() {
		stopSys()
		xr.close()
		closeStore()
	}, nil
}

// mesh is the translation input and the catalog of the mesh serving role:
// mesh-b exports the service with an HTTP and a TCP port to mesh-a, whose
// catalog holds it as imported, its endpoint mesh-b's ingress.
func (x *dataPathEnv) mesh(p *pki, st *store.Store, role model.Role) (snapshot.Input, *catalog.Catalog, error) {
	if role == model.Ingress {
		in, err := p.ownerInput(x.ingressIP, x.ingressPort)
		if err != nil {
			return in, nil, err
		}
		cat := catalog.New(st, zap.NewNop())
		if err := cat.SetPeers([]catalog.Peer{{
			Peer:   model.Peer{Name: "mesh-a", TrustDomain: localTD},
			Policy: validate.Policy{TrustDomain: spiffeid.RequireTrustDomainFromString(localTD)},
		}}); err != nil {
			return in, nil, err
		}
		_, httpPort, _ := net.SplitHostPort(x.httpAddr)
		hp, _ := strconv.Atoi(httpPort)
		fqdn := dataPathService + "." + peerTD
		cat.SetExports([]model.Export{{
			Name: dataPathService, FQDN: fqdn, Mode: model.Terminate, Consumers: []string{"mesh-a"},
			Ports: []model.ExportPort{
				{Name: "http", Port: dataPathHTTPPort, Protocol: model.HTTP, SNI: model.DefaultSNI(dataPathHTTPPort, fqdn),
					Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: uint32(hp)}}},
				{Name: "tcp", Port: dataPathTCPPort, Protocol: model.TCP, SNI: model.DefaultSNI(dataPathTCPPort, fqdn),
					Endpoints: []model.LocalEndpoint{{Address: "127.0.0.1", Port: x.sink.port()}}},
			},
		}})
		return in, cat, nil
	}
	in := p.input()
	in.Gateways.Egress = snapshot.Address{Address: x.egressIP}
	cat := catalog.New(st, zap.NewNop())
	// mesh-b's ingress is on this host: its endpoint is a loopback
	// address, which only a peer allowed loopback may name.
	policy := validate.Policy{TrustDomain: spiffeid.RequireTrustDomainFromString(peerTD), AllowLoopback: true}
	if err := cat.SetPeers([]catalog.Peer{{Peer: model.Peer{Name: peerName, TrustDomain: peerTD}, Policy: policy}}); err != nil {
		return in, nil, err
	}
	fqdn := dataPathService + "." + peerTD
	svc := model.Service{
		Name: dataPathService, FQDN: fqdn,
		Endpoints: []model.Endpoint{{Address: x.ingressIP, Port: x.ingressPort}},
		SANs:      []string{"spiffe://" + peerTD + "/meshfed/gateway/ingress"},
		Instances: []model.Instance{
			{ID: "http", Protocol: model.HTTP, Port: dataPathHTTPPort, SNI: model.DefaultSNI(dataPathHTTPPort, fqdn)},
			{ID: "tcp", Protocol: model.TCP, Port: dataPathTCPPort, SNI: model.DefaultSNI(dataPathTCPPort, fqdn)},
		},
	}
	fs := wire.FromModel(svc)
	raw, err := proto.Marshal(fs)
	if err != nil {
		return in, nil, err
	}
	v, err := validate.Service(fs, policy)
	if err != nil {
		return in, nil, err
	}
	return in, cat, cat.Upsert(peerName, dataPathService, v, raw)
}

// startEnvoy runs the gateway of role (its bootstrap is role.yaml) on sys
// and waits until it has its clusters and listeners, all active.
func (x *dataPathEnv) startEnvoy(m *servedMesh, role, node string) (*envoyFleet, error) {
	keep, err := envoyLogs(x.opts.EnvoyLogs, "datapath-")
	if err != nil {
		return nil, err
	}
	sys := m.sys
	f, err := newEnvoyFleet(m.xr.srv, m.xr.dir, keep, role+".yaml")
	if err != nil {
		return nil, err
	}
	events := newCollector(f.events())
	defer events.stop()
	counts := map[string]int{
		resource.ClusterType:  sys.c.Len(sys.role, resource.ClusterType),
		resource.ListenerType: sys.c.Len(sys.role, resource.ListenerType),
	}
	if err := f.expectSync(counts); err != nil {
		return f, err
	}
	if _, err := connectAll(f, events, fleetConfig{Addr: xds.Target(m.xr.lis.Addr()), Delta: true, Nodes: []string{node}}, x.opts.WaitTimeout); err != nil {
		return f, fmt.Errorf("%s gateway: %w", role, err)
	}
	return f, nil
}

// httpLoad runs fortio's closed-loop load at concurrency c for the run's
// duration, to the backend or through mesh-a's egress gateway (by the
// imported name, as a workload resolving it to the egress does).
func (x *dataPathEnv) httpLoad(ctx context.Context, c int, through bool) (*HTTPFigures, error) {
	o := fhttp.HTTPRunnerOptions{}
	o.URL = "http://" + x.httpAddr + "/"
	if through {
		o.URL = fmt.Sprintf("http://%s.%s:%d/", dataPathService, peerTD, dataPathHTTPPort)
		o.Resolve = x.egressIP
	}
	o.RunnerOptions = periodic.RunnerOptions{
		RunType: "meshfed-bench", QPS: -1, NumThreads: c, Duration: x.opts.DataPath,
		Percentiles: []float64{50, 99}, Out: io.Discard, Stop: periodic.NewAborter(),
		// Microseconds: a request through loopback takes less than the
		// default millisecond buckets tell apart.
		Resolution: 1e-6,
	}
	stop := context.AfterFunc(ctx, func() { o.Stop.Abort(false) })
	defer stop()
	res, err := fhttp.RunHTTPTest(&o)
	if err != nil {
		return nil, err
	}
	f := &HTTPFigures{Requests: res.RetCodes[http.StatusOK], RPS: res.ActualQPS}
	for code, n := range res.RetCodes {
		if code != http.StatusOK {
			f.Errors += n
		}
	}
	for _, pc := range res.DurationHistogram.Percentiles {
		switch pc.Percentile {
		case 50:
			f.P50Ms = pc.Value * 1000
		case 99:
			f.P99Ms = pc.Value * 1000
		}
	}
	return f, ctx.Err()
}

// tcpChunk is the size of each write of a bulk transfer.
const tcpChunk = 64 << 10

// tcpBulk writes to addr for the run's duration, half-closes, and waits
// for the sink's count of the bytes it read.
func (x *dataPathEnv) tcpBulk(ctx context.Context, addr string) (int64, float64, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	tc := conn.(*net.TCPConn)
	buf := make([]byte, tcpChunk)
	start := time.Now()
	deadline := start.Add(x.opts.DataPath)
	_ = conn.SetDeadline(deadline.Add(x.opts.WaitTimeout))
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := tc.Write(buf); err != nil {
			return 0, 0, err
		}
	}
	if err := tc.CloseWrite(); err != nil {
		return 0, 0, err
	}
	var count [8]byte
	if _, err := io.ReadFull(tc, count[:]); err != nil {
		return 0, 0, fmt.Errorf("the sink's count after the half-close: %w", err)
	}
	n := int64(binary.BigEndian.Uint64(count[:]))
	return n, float64(n) / 1e6 / time.Since(start).Seconds(), nil
}

// tcpSink reads each connection to its end and answers with the count of
// bytes it read.
type tcpSink struct {
	l  net.Listener
	wg sync.WaitGroup
}

func startSink() (*tcpSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &tcpSink{l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				n, err := io.Copy(io.Discard, c)
				if err != nil {
					return
				}
				var count [8]byte
				binary.BigEndian.PutUint64(count[:], uint64(n))
				_, _ = c.Write(count[:])
			}()
		}
	}()
	return s, nil
}

func (s *tcpSink) addr() string { return s.l.Addr().String() }
func (s *tcpSink) port() uint32 { return uint32(s.l.Addr().(*net.TCPAddr).Port) }

func (s *tcpSink) close() {
	_ = s.l.Close()
	s.wg.Wait()
}

// ownerInput is mesh-b's translation input, its ingress gateway on
// ip:port with an SVID of mesh-b's CA.
func (p *pki) ownerInput(ip string, port uint32) (snapshot.Input, error) {
	ca := p.cas[peerTD]
	chain, key, err := ca.Issue(spiffeid.RequireFromPath(ca.TrustDomain(), "/meshfed/gateway/ingress"), 24*time.Hour)
	if err != nil {
		return snapshot.Input{}, err
	}
	return snapshot.Input{
		Settings: snapshot.Settings{
			TrustDomain: peerTD,
			Peers:       []model.Peer{{Name: "mesh-a", TrustDomain: localTD}},
			Gateways: snapshot.Gateways{
				Egress:  snapshot.Address{Address: ip},
				Ingress: snapshot.SocketAddress{Address: ip, Port: port},
			},
		},
		Secrets: snapshot.Secrets{
			SVIDs:   map[model.Role]snapshot.SVID{model.Ingress: {CertChain: string(chain), PrivateKey: string(key)}},
			Bundles: p.secrets.Bundles,
		},
	}, nil
}

// writeDataPath writes the data path's table: each figure direct and
// through both gateways, and their ratio.
func (r *Report) writeDataPath(w io.Writer) error {
	dp := r.DataPath
	fmt.Fprintf(w, "\ndata path: a client of mesh-a to a service of mesh-b, directly and through mesh-a's egress and mesh-b's ingress Envoy (1 worker thread each, mutual TLS between them), on this host; closed-loop HTTP/1.1 (fortio, keep-alive, %d B answers) and one TCP connection's bulk transfer, %.0f s each\n", len(dataPathBody), dp.SecondsEach)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tdirect\tthrough\tthrough/direct\t")
	row := func(label, format string, direct, through float64) {
		fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t%s\t\n", label, direct, through, ratio(map[string]float64{"d": direct, "t": through}, "t", "d"))
	}
	for _, l := range dp.HTTP {
		row(fmt.Sprintf("HTTP requests/s, concurrency %d", l.Concurrency), "%.0f", l.Direct.RPS, l.Through.RPS)
		row("  p50 (ms)", "%.3f", l.Direct.P50Ms, l.Through.P50Ms)
		row("  p99 (ms)", "%.3f", l.Direct.P99Ms, l.Through.P99Ms)
		row("  errors", "%.0f", float64(l.Direct.Errors), float64(l.Through.Errors))
	}
	if t := dp.TCP; t != nil {
		row("TCP bulk (MB/s)", "%.0f", t.DirectMBps, t.ThroughMBps)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "envoy update_rejected %d, init_fetch_timeout %d (both gateways)\n", dp.UpdateRejected, dp.InitFetchTimeout)
	for _, e := range dp.Errors {
		fmt.Fprintf(w, "  %s\n", e)
	}
	if dp.Failed != "" {
		fmt.Fprintf(w, "  FAILED: %s\n", dp.Failed)
	}
	return nil
}

// dataPathTargets report what the two gateways cost a request and a
// stream, as ratios to the direct path measured in the same run; the
// architecture sets no number for them.
func (r *Report) dataPathTargets() []Target {
	dp := r.DataPath
	if dp == nil {
		return nil
	}
	if dp.Failed != "" {
		return []Target{{Name: "data path through both gateways", Want: "reported", Measured: "failed: " + dp.Failed}}
	}
	var out []Target
	for _, l := range dp.HTTP {
		d, t := l.Direct, l.Through
		out = append(out, Target{
			Name: fmt.Sprintf("data path, HTTP, concurrency %d: through both gateways vs direct", l.Concurrency), Want: "reported",
			Measured: fmt.Sprintf("requests/s %.2fx (%.0f vs %.0f); p50 +%.2f ms, p99 +%.2f ms", t.RPS/max(d.RPS, 1e-9), t.RPS, d.RPS, t.P50Ms-d.P50Ms, t.P99Ms-d.P99Ms),
			Note:     fmt.Sprintf("p50 %.3f vs %.3f ms, p99 %.3f vs %.3f ms; %d errors through, %d direct", t.P50Ms, d.P50Ms, t.P99Ms, d.P99Ms, t.Errors, d.Errors),
		})
	}
	if t := dp.TCP; t != nil {
		out = append(out, Target{
			Name: "data path, TCP bulk, one connection: through both gateways vs direct", Want: "reported",
			Measured: fmt.Sprintf("%.2fx (%.0f vs %.0f MB/s)", t.ThroughMBps/max(t.DirectMBps, 1e-9), t.ThroughMBps, t.DirectMBps),
		})
	}
	return append(out, Target{
		Name: "  data path Envoys' update_rejected and init_fetch_timeout", Want: "0",
		Measured: fmt.Sprintf("%d and %d", dp.UpdateRejected, dp.InitFetchTimeout), Met: verdictOf(dp.UpdateRejected == 0 && dp.InitFetchTimeout == 0),
	})
}
