// Command meshfed-bench measures meshfed's snapshot and xDS stack against
// the plain go-control-plane baselines and writes a table to stdout, and a
// JSON report and the table under -out. See package bench; bench/plot draws
// the plots from the JSON report.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshfed/meshfed/bench"
)

func main() {
	if code, ok := bench.Child(); ok {
		os.Exit(code)
	}
	os.Exit(run())
}

// publish prints the report's table and writes its files in out.
func publish(rep *bench.Report, out string) int {
	if err := rep.WriteTable(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "meshfed-bench:", err)
		return 1
	}
	files, err := rep.Write(out)
	for _, f := range files {
		fmt.Fprintln(os.Stderr, "wrote", f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshfed-bench:", err)
		return 1
	}
	return 0
}

// execute runs the benchmark, prints its table and writes its report in
// out.
func execute(o bench.Options, out string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, o)
	if rep == nil {
		fmt.Fprintln(os.Stderr, "meshfed-bench:", err)
		return 1
	}
	if code := publish(rep, out); code != 0 {
		return code
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshfed-bench:", err)
		return 1
	}
	return 0
}

func run() int {
	var (
		o                                 bench.Options
		n, m, systems, modes, workloads   string
		syncN, syncWindows, ingressN      string
		out                               string
		noSync, noNetem                   bool
		singleBudget, churnDur, holdoff   time.Duration
		waitTimeout, netemDelay, syncWait time.Duration
	)
	var plans planFlag
	flag.Var(&plans, "plan", "a set of runs, repeatable: 'n=10000 m=100 systems=meshfed,linear modes=delta workloads=single'; 'kind=envoy' runs real Envoy gateways (cold start and single changes); what it leaves out comes from -n, -m, -systems, -modes and -workloads")
	flag.StringVar(&n, "n", "1000,10000", "catalog sizes N, comma-separated")
	flag.StringVar(&m, "m", "10,100", "numbers of gateways M, comma-separated")
	flag.StringVar(&systems, "systems", strings.Join(bench.Systems, ","), "systems to measure")
	flag.StringVar(&modes, "modes", "delta,sotw", "xDS modes")
	flag.StringVar(&workloads, "workloads", strings.Join(bench.Workloads, ","), "workloads (cold always runs)")
	flag.IntVar(&o.SingleChanges, "single", 40, "most changes of the single-change workload")
	flag.DurationVar(&singleBudget, "single-budget", 5*time.Second, "time after which the single-change workload stops (at least 3 changes)")
	flag.Float64Var(&o.ChurnRate, "churn-rate", 50, "churn changes per second")
	flag.DurationVar(&churnDur, "churn-duration", 2*time.Second, "churn duration")
	flag.Float64Var(&o.BurstFraction, "burst", 0.1, "fraction of N changed in the one-second burst")
	flag.DurationVar(&holdoff, "holdoff", time.Millisecond, "meshfed runner holdoff")
	flag.DurationVar(&waitTimeout, "wait", 2*time.Minute, "longest wait for one change to reach every gateway")
	flag.BoolVar(&o.InProcessClients, "in-process", false, "run the gateways in this process (heap and CPU then include theirs)")
	flag.StringVar(&o.EnvoyLogs, "envoy-logs", "", "directory that receives the log of every real Envoy gateway (kind=envoy plans)")
	flag.StringVar(&o.StoreDir, "store-dir", "", "directory of the xDS runs' stores (default /dev/shm when present)")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of the generated catalog and changes")
	flag.StringVar(&ingressN, "ingress-n", "", "numbers of exports of the ingress gateway's measurement, comma-separated: one real Envoy from ingress.yaml, its heap per exported port after the cold start, and single export changes (add, remove, endpoints; bounded by -single and -single-budget, at least 10 rounds); none by default")
	flag.DurationVar(&o.DataPath, "datapath", 0, "measure the data path for this long each: HTTP requests per second and latency direct and through both gateways (real Envoys, mutual TLS between them) at concurrency 1 and 32, and TCP bulk throughput; 0: not measured")
	flag.BoolVar(&noSync, "no-sync", false, "skip the catalog sync benchmark")
	flag.BoolVar(&o.NoXDS, "sync-only", false, "run the catalog sync benchmark only")
	flag.BoolVar(&o.NoEgress, "no-egress", false, "skip the runs of egress gateways (every -plan), e.g. to run the ingress measurement alone")
	flag.StringVar(&syncN, "sync-n", "1000", "catalog sizes of the sync benchmark")
	flag.StringVar(&syncWindows, "sync-windows", "1,64", "consumer windows of the sync benchmark (1 is the specification)")
	flag.StringVar(&o.Sync.StoreDir, "sync-store-dir", "", "directory of the sync consumer's store (default the temporary directory)")
	flag.BoolVar(&noNetem, "no-netem", false, "skip the sync over a link with netem latency (root only)")
	flag.DurationVar(&netemDelay, "netem-delay", 25*time.Millisecond, "netem delay each way; negative: the namespace without netem")
	flag.DurationVar(&syncWait, "sync-wait", 5*time.Minute, "longest wait for one sync")
	flag.BoolVar(&o.Sync.NoProxy, "no-proxy", false, "skip the sync through the userspace latency proxy")
	flag.DurationVar(&o.Sync.ProxyRTT, "proxy-rtt", 50*time.Millisecond, "round trip the latency proxy adds (half each way)")
	flag.DurationVar(&o.Sync.ProxyBudget, "proxy-budget", 30*time.Second, "longest sync through the proxy before its time is extrapolated from the services imported (negative: none)")
	flag.StringVar(&out, "out", "bench/results", "directory of the JSON report and the table")
	var from string
	flag.StringVar(&from, "report", "", "render the table of a saved JSON report instead of running")
	flag.Parse()
	if from != "" {
		return render(from, out)
	}

	var err error
	if o.Services, err = ints(n); err != nil {
		return usage("-n", err)
	}
	if o.Gateways, err = ints(m); err != nil {
		return usage("-m", err)
	}
	if o.Ingress, err = ints(ingressN); err != nil {
		return usage("-ingress-n", err)
	}
	if o.Sync.Services, err = ints(syncN); err != nil {
		return usage("-sync-n", err)
	}
	if o.Sync.Windows, err = ints(syncWindows); err != nil {
		return usage("-sync-windows", err)
	}
	o.Systems, o.Modes, o.Workloads = list(systems), list(modes), list(workloads)
	o.Plans = plans
	o.SingleBudget, o.ChurnDuration, o.Holdoff, o.WaitTimeout = singleBudget, churnDur, holdoff, waitTimeout
	o.Sync.Skip, o.Sync.NoNetem, o.Sync.NetemDelay, o.Sync.Timeout = noSync, noNetem, netemDelay, syncWait
	o.Command = strings.Join(os.Args, " ")

	return execute(o, out)
}

func usage(flagName string, err error) int {
	fmt.Fprintf(os.Stderr, "meshfed-bench: %s: %v\n", flagName, err)
	return 2
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range list(s) {
		v, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil {
			return nil, err
		}
		if v < 1 {
			return nil, fmt.Errorf("%d is not a positive count (-no-sync skips the sync benchmark)", v)
		}
		out = append(out, v)
	}
	return out, nil
}

// planFlag collects -plan values.
type planFlag []bench.Plan

func (p *planFlag) String() string { return fmt.Sprint(*p) }

func (p *planFlag) Set(v string) error {
	var pl bench.Plan
	for _, field := range strings.Fields(v) {
		k, val, ok := strings.Cut(field, "=")
		if !ok {
			return fmt.Errorf("%q: want key=value", field)
		}
		var err error
		switch k {
		case "n":
			pl.Services, err = ints(val)
		case "m":
			pl.Gateways, err = ints(val)
		case "systems":
			pl.Systems = list(val)
		case "modes":
			pl.Modes = list(val)
		case "workloads":
			pl.Workloads = list(val)
		case "kind":
			pl.Kind = val
		default:
			return fmt.Errorf("%q: unknown key (want kind, n, m, systems, modes, workloads)", k)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	*p = append(*p, pl)
	return nil
}

// render writes the table of a saved report.
func render(path, out string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshfed-bench:", err)
		return 1
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		fmt.Fprintf(os.Stderr, "meshfed-bench: %s: %v\n", path, err)
		return 1
	}
	return publish(&rep, out)
}
