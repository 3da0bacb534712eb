// Package bench measures meshfed's snapshot and xDS stack against the plain
// go-control-plane baselines, side by side in one process run: N federated
// services in a real catalog (bbolt store), M simulated egress gateways
// (real gRPC ADS clients on loopback that decode every resource and ACK it),
// in state-of-the-world and in delta mode, under the workloads of
// docs/architecture ("The numbers we build for"). It also measures the
// ingress gateway (a real Envoy with N exports: its heap per exported port
// and single export changes) and the catalog sync between two real agents
// over mutual TLS.
//
// Systems:
//   - meshfed: the catalog → snapshot/runner → snapshot/cache → xds server;
//   - snapshot: go-control-plane's SnapshotCache, the whole catalog
//     translated again (snapshot.Build) on every change and the one new
//     snapshot set for every gateway's node;
//   - linear: one go-control-plane LinearCache per type behind a MuxCache,
//     updated with the resources of the changed services (their routing
//     scopes among them) and, when a service port appears, its listener.
//
// All three are served by the same xds.Server and get the same catalog
// changes, in the same order, from the same seed.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// The modes of xDS.
const (
	ModeDelta = "delta"
	ModeSotw  = "sotw"
)

// The workloads.
const (
	// WorkloadCold connects M gateways at once to a running control plane
	// and waits until each holds every resource.
	WorkloadCold = "cold"
	// WorkloadSingle makes one change at a time and waits until every
	// gateway ACKed it, with the churn mix of kinds.
	WorkloadSingle = "single"
	// WorkloadChurn makes changes at a steady rate: 80% endpoint changes,
	// 15% service edits, 5% adds and removes.
	WorkloadChurn = "churn"
	// WorkloadBurst changes 10% of the services within one second.
	WorkloadBurst = "burst"
	// WorkloadStorm disconnects every gateway, makes one change, and
	// reconnects them all at once; each resumes from what it holds.
	WorkloadStorm = "storm"
)

// Workloads lists every workload, in the order they run.
var Workloads = []string{WorkloadCold, WorkloadSingle, WorkloadChurn, WorkloadBurst, WorkloadStorm}

// Plan is a set of runs: every system in every mode at every N and M. Its
// empty fields take those of Options.
type Plan struct {
	// Kind of gateways: KindSimulated (default) or KindEnvoy, real Envoy
	// processes, which run the cold start and single changes only.
	Kind      string   `json:"kind,omitempty"`
	Services  []int    `json:"services"`
	Gateways  []int    `json:"gateways"`
	Systems   []string `json:"systems"`
	Modes     []string `json:"modes"`
	Workloads []string `json:"workloads"`
}

// Options configure Run. Zero fields take the defaults shown.
type Options struct {
	// Services are the catalog sizes N (default 1000).
	Services []int
	// Gateways are the numbers of gateways M (default 10).
	Gateways []int
	// Systems (default all), Modes (default delta and sotw) and Workloads
	// (default all; the cold start always runs, it connects the gateways).
	Systems   []string
	Modes     []string
	Workloads []string
	// Plans, when set, are run instead of the one plan of the fields
	// above, which fill in what a plan leaves empty.
	Plans []Plan
	// NoXDS skips the xDS runs and the ingress measurement (to run the
	// sync benchmark alone); NoEgress skips the xDS runs (the plans) only.
	NoXDS, NoEgress bool
	// Ingress are the numbers of exports N at which the ingress gateway
	// is measured, after an ingress Envoy with no export: Envoy's heap
	// per exported port after the cold start, and the cost of single
	// export changes (SingleChanges and SingleBudget bound their rounds).
	// None: not measured.
	Ingress []int
	// DataPath, when positive, measures the data path: each HTTP load
	// (direct and through both gateways, at each concurrency) and each TCP
	// transfer runs this long.
	DataPath time.Duration
	// SingleChanges caps the single-change workload (default 40); it stops
	// earlier after SingleBudget (default 5s), with at least 3 changes.
	SingleChanges int
	SingleBudget  time.Duration
	// ChurnRate in changes per second (default 50) for ChurnDuration
	// (default 2s).
	ChurnRate     float64
	ChurnDuration time.Duration
	// BurstFraction of N changed within one second (default 0.1).
	BurstFraction float64
	// Holdoff of meshfed's runner (default 1ms).
	Holdoff time.Duration
	// WaitTimeout bounds the wait for one change (default 2m).
	WaitTimeout time.Duration
	// InProcessClients runs the gateways in this process instead of a
	// child process; the heap, CPU and allocation figures then include
	// theirs. A test binary can only re-execute itself as the child when
	// its TestMain calls Child.
	InProcessClients bool
	// StoreDir holds the runs' stores (default /dev/shm when present, so
	// that the catalog's fsync per change does not stand in front of the
	// xDS path; else the system's temporary directory).
	StoreDir string
	// EnvoyLogs, when set, is a directory that receives the log of every
	// real Envoy gateway.
	EnvoyLogs string
	// Seed makes the runs reproducible (default 1).
	Seed uint64
	// Sync configures the catalog sync benchmark.
	Sync SyncOptions
	// Progress receives a line per phase (default os.Stderr).
	Progress io.Writer
	// Command is recorded in the report as what produced it.
	Command string
}

func (o *Options) defaults() error {
	if len(o.Services) == 0 {
		o.Services = []int{1000}
	}
	if len(o.Gateways) == 0 {
		o.Gateways = []int{10}
	}
	if len(o.Systems) == 0 {
		o.Systems = Systems
	}
	if len(o.Modes) == 0 {
		o.Modes = []string{ModeDelta, ModeSotw}
	}
	if len(o.Workloads) == 0 {
		o.Workloads = Workloads
	}
	if len(o.Plans) == 0 {
		o.Plans = []Plan{{}}
	}
	for i := range o.Plans {
		if err := o.fill(&o.Plans[i]); err != nil {
			return err
		}
	}
	for _, n := range o.Ingress {
		if n < 1 {
			return fmt.Errorf("ingress: %d exports; at least 1", n)
		}
	}
	if o.SingleChanges <= 0 {
		o.SingleChanges = 40
	}
	if o.SingleBudget <= 0 {
		o.SingleBudget = 5 * time.Second
	}
	if o.ChurnRate <= 0 {
		o.ChurnRate = 50
	}
	if o.ChurnDuration <= 0 {
		o.ChurnDuration = 2 * time.Second
	}
	if o.BurstFraction <= 0 {
		o.BurstFraction = 0.1
	}
	if o.Holdoff <= 0 {
		o.Holdoff = time.Millisecond
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = 2 * time.Minute
	}
	if o.StoreDir == "" {
		o.StoreDir = os.TempDir()
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			o.StoreDir = "/dev/shm"
		}
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Progress == nil {
		o.Progress = os.Stderr
	}
	return o.Sync.defaults()
}

// fill completes and checks a plan.
func (o *Options) fill(p *Plan) error {
	or := func(v, def []string) []string {
		if len(v) == 0 {
			return def
		}
		return v
	}
	if len(p.Services) == 0 {
		p.Services = o.Services
	}
	if len(p.Gateways) == 0 {
		p.Gateways = o.Gateways
	}
	p.Systems, p.Modes, p.Workloads = or(p.Systems, o.Systems), or(p.Modes, o.Modes), or(p.Workloads, o.Workloads)
	switch p.Kind {
	case "", KindSimulated:
		p.Kind = KindSimulated
	case KindEnvoy:
		p.Workloads = slices.DeleteFunc(slices.Clone(p.Workloads), func(w string) bool { return !slices.Contains(envoyWorkloads, w) })
	default:
		return fmt.Errorf("unknown kind %q (want %s, %s)", p.Kind, KindSimulated, KindEnvoy)
	}
	for _, s := range p.Systems {
		if !slices.Contains(Systems, s) {
			return fmt.Errorf("unknown system %q (want %s)", s, strings.Join(Systems, ", "))
		}
	}
	for _, m := range p.Modes {
		if m != ModeDelta && m != ModeSotw {
			return fmt.Errorf("unknown mode %q (want delta, sotw)", m)
		}
	}
	for _, w := range p.Workloads {
		if !slices.Contains(Workloads, w) {
			return fmt.Errorf("unknown workload %q (want %s)", w, strings.Join(Workloads, ", "))
		}
	}
	for _, n := range p.Services {
		if n < 2 {
			return fmt.Errorf("services: %d; at least 2", n)
		}
	}
	for _, m := range p.Gateways {
		if m < 1 {
			return fmt.Errorf("gateways: %d; at least 1", m)
		}
	}
	return nil
}

// Report is everything a Run measured.
type Report struct {
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Host     Host      `json:"host"`
	Settings Settings  `json:"settings"`
	Plans    []Plan    `json:"plans"`
	// Runs are the xDS runs, by N, M, system and mode.
	Runs []*RunResult `json:"runs"`
	// Ingress is the ingress gateway's measurement; nil when not run.
	Ingress *IngressReport `json:"ingress,omitempty"`
	// DataPath is the data path's measurement; nil when not run.
	DataPath *DataPathReport `json:"dataPath,omitempty"`
	// Sync is the catalog sync benchmark; nil when not run.
	Sync *SyncReport `json:"sync,omitempty"`
	// Targets are the architecture's numbers as measured by the runs.
	Targets []Target `json:"targets,omitempty"`
}

// Host describes where the report was measured.
type Host struct {
	GoVersion  string `json:"goVersion"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpuModel,omitempty"`
}

// Settings are the options that shape the figures.
type Settings struct {
	Role           string  `json:"role"`
	HoldoffMs      float64 `json:"meshfedHoldoffMs"`
	StoreDir       string  `json:"storeDir"`
	Clients        string  `json:"clients"`
	ChurnRate      float64 `json:"churnRatePerSec"`
	ChurnSeconds   float64 `json:"churnSeconds"`
	BurstFraction  float64 `json:"burstFraction"`
	TCPShare       float64 `json:"tcpShare"`
	EndpointsPerSv int     `json:"endpointsPerService"`
	Seed           uint64  `json:"seed"`
}

// Run runs every configured measurement and returns the report. A run that
// fails is recorded with its error and the others go on; the error is
// non-nil only when nothing could be measured, the options are wrong, or
// ctx ended.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	rep := &Report{
		Command: opts.Command,
		Started: time.Now(),
		Host: Host{
			GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
			CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPUModel: cpuModel(),
		},
		Settings: Settings{
			Role:           "egress",
			HoldoffMs:      float64(opts.Holdoff) / float64(time.Millisecond),
			StoreDir:       opts.StoreDir,
			Clients:        "child process",
			ChurnRate:      opts.ChurnRate,
			ChurnSeconds:   opts.ChurnDuration.Seconds(),
			BurstFraction:  opts.BurstFraction,
			TCPShare:       1 / float64(tcpEvery),
			EndpointsPerSv: endpointsPerService,
			Seed:           opts.Seed,
		},
	}
	if opts.InProcessClients {
		rep.Settings.Clients = "in process"
	}
	p, err := newPKI()
	if err != nil {
		return nil, err
	}
	if opts.NoXDS || opts.NoEgress {
		opts.Plans = nil
	}
	if opts.NoXDS {
		opts.Ingress, opts.DataPath = nil, 0
	}
	rep.Plans = opts.Plans
	total := 0
	for _, pl := range opts.Plans {
		total += len(pl.Services) * len(pl.Gateways) * len(pl.Systems) * len(pl.Modes)
	}
	i := 0
	for _, pl := range opts.Plans {
		for _, n := range pl.Services {
			for _, m := range pl.Gateways {
				for _, sys := range pl.Systems {
					for _, mode := range pl.Modes {
						i++
						if err := ctx.Err(); err != nil {
							return rep, err
						}
						prefix := fmt.Sprintf("[%d/%d] %s %s N=%d M=%d", i, total, sys, mode, n, m)
						if pl.Kind == KindEnvoy {
							prefix += " envoy"
						}
						rep.Runs = append(rep.Runs, runOne(ctx, &opts, p, prefix, pl.Kind, sys, mode, n, m, pl.Workloads))
					}
				}
			}
		}
	}
	if len(opts.Ingress) > 0 {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Ingress = runIngress(ctx, &opts, p)
	}
	if opts.DataPath > 0 {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.DataPath = runDataPath(ctx, &opts, p)
	}
	if !opts.Sync.Skip {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Sync = runSync(ctx, &opts.Sync, opts.Progress)
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.Targets = rep.evaluate()
	if len(rep.Runs) > 0 && allFailed(rep.Runs) {
		return rep, errors.New("every run failed")
	}
	return rep, nil
}

func allFailed(runs []*RunResult) bool {
	for _, r := range runs {
		if r.Failed == "" {
			return false
		}
	}
	return true
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
