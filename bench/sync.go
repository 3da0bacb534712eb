package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/internal/delayproxy"
)

// SyncOptions configure the catalog sync benchmark: an owner agent exports
// N services to a consumer agent, both real (peer.Manager, mutual TLS,
// bbolt store); the consumer dials and the time until its catalog holds
// all N imports is measured, as plain Hamlet (one response of one service
// in flight) and with the extensions negotiated.
type SyncOptions struct {
	Skip bool
	// Services are the catalog sizes (default 1000).
	Services []int
	// Windows are the consumer's window settings (default 1 and 64); the
	// owner offers 64, and the smaller one is negotiated. 1 is the
	// specification: the consumer then advertises no extension at all, as
	// a peer of another implementation.
	Windows []int
	// ServicesPerResponse are what the consumer offers beside a window
	// above 1, a run each (default config.DefaultMaxBatch, what an agent
	// offers); the owner offers config.DefaultMaxBatch. 1 is one service
	// per response, as agents before services-per-response.
	ServicesPerResponse []int
	// StoreDir holds the consumer's store, where every import is written
	// before it is ACKed (default the system's temporary directory: a
	// disk, so that the fsyncs cost what they cost).
	StoreDir string
	// NoNetem skips the run over a link with added latency. Otherwise it
	// runs when root with ip and tc at hand: the owner then runs in a
	// network namespace of its own, behind a veth pair with netem adding
	// NetemDelay (default 25ms) each way.
	NoNetem    bool
	NetemDelay time.Duration
	// NoProxy skips the runs through the userspace latency proxy, which
	// adds ProxyRTT (default 50ms) to every round trip between the agents
	// (half each way), on loopback, with no privilege needed.
	NoProxy  bool
	ProxyRTT time.Duration
	// ProxyBudget bounds a sync through the proxy (default 30s; negative:
	// none): one that does not end within it is stopped, and its time
	// extrapolated from the services it imported (with window 1 at 50 ms
	// RTT, 10,000 services take minutes).
	ProxyBudget time.Duration
	// Timeout bounds one sync (default 5m).
	Timeout time.Duration
}

func (o *SyncOptions) defaults() error {
	if len(o.Services) == 0 {
		o.Services = []int{1000}
	}
	if len(o.Windows) == 0 {
		o.Windows = []int{1, 64}
	}
	for _, w := range o.Windows {
		if w < 1 {
			return fmt.Errorf("sync window %d: at least 1", w)
		}
	}
	if len(o.ServicesPerResponse) == 0 {
		o.ServicesPerResponse = []int{config.DefaultMaxBatch}
	}
	for _, n := range o.ServicesPerResponse {
		if n < 1 || n > config.DefaultMaxBatch {
			return fmt.Errorf("sync services per response %d: out of range 1-%d (a transaction's services)", n, config.DefaultMaxBatch)
		}
	}
	if o.StoreDir == "" {
		o.StoreDir = os.TempDir()
	}
	if o.NetemDelay == 0 {
		o.NetemDelay = 25 * time.Millisecond
	}
	if o.ProxyRTT <= 0 {
		o.ProxyRTT = 50 * time.Millisecond
	}
	if o.ProxyBudget == 0 {
		o.ProxyBudget = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	return nil
}

// ownerWindow is what the owner offers.
const ownerWindow = 64

// consumerSetting is what the consumer of one run advertises.
type consumerSetting struct {
	window, perResponse int
	// plain: no extension at all.
	plain bool
}

// settings are the consumers of o's runs, in order.
func (o *SyncOptions) settings() []consumerSetting {
	var out []consumerSetting
	for _, w := range o.Windows {
		if w == 1 {
			out = append(out, consumerSetting{window: 1, perResponse: 1, plain: true})
			continue
		}
		for _, n := range o.ServicesPerResponse {
			out = append(out, consumerSetting{window: w, perResponse: n})
		}
	}
	return out
}

// SyncReport is the catalog sync benchmark.
type SyncReport struct {
	StoreDir string    `json:"storeDir"`
	Runs     []SyncRun `json:"runs"`
	// NetemSkipped says why the run over the slow link did not happen.
	NetemSkipped string `json:"netemSkipped,omitempty"`
}

// SyncRun is one initial sync.
type SyncRun struct {
	Link     string `json:"link"`
	Services int    `json:"services"`
	// Window is the negotiated window: 1 is the specification.
	Window int `json:"window"`
	// ServicesPerResponse is the negotiated most services of a response:
	// 1 is the specification.
	ServicesPerResponse int `json:"servicesPerResponse"`
	// Negotiated is every extension the stream negotiated, as advertised
	// ("sync-complete,window=64,..."); empty for plain Hamlet.
	Negotiated string  `json:"negotiated"`
	Ms         float64 `json:"ms"`
	// PerServiceMs is Ms / Services.
	PerServiceMs float64 `json:"perServiceMs"`
	// Extrapolated: the sync was stopped after Imported services, and Ms
	// is the time all would have taken at the rate measured.
	Extrapolated bool   `json:"extrapolated,omitempty"`
	Imported     int    `json:"imported,omitempty"`
	Error        string `json:"error,omitempty"`
}

func runSync(ctx context.Context, o *SyncOptions, progress io.Writer) *SyncReport {
	rep := &SyncReport{StoreDir: o.StoreDir}
	p, err := newPKI()
	if err != nil {
		rep.Runs = append(rep.Runs, SyncRun{Link: "loopback", Error: err.Error()})
		return rep
	}
	ids, err := p.agentIdentities()
	if err != nil {
		rep.Runs = append(rep.Runs, SyncRun{Link: "loopback", Error: err.Error()})
		return rep
	}
	for _, n := range o.Services {
		dir, err := os.MkdirTemp(o.StoreDir, "meshfed-bench-owner-")
		if err != nil {
			rep.Runs = append(rep.Runs, SyncRun{Link: "loopback", Services: n, Error: err.Error()})
			continue
		}
		owner, err := startAgent(agentConfig{Owner: true, Exports: n, Listen: "127.0.0.1:0", Window: ownerWindow, ServicesPerResponse: config.DefaultMaxBatch, StoreDir: dir, Identity: ids[peerTD]})
		if err != nil {
			os.RemoveAll(dir)
			rep.Runs = append(rep.Runs, SyncRun{Link: "loopback", Services: n, Error: err.Error()})
			continue
		}
		for _, c := range o.settings() {
			r := syncOnce(ctx, o, ids[localTD], owner.addr, n, c, "loopback", 0)
			report(progress, r)
			rep.Runs = append(rep.Runs, r)
		}
		if !o.NoProxy {
			link := proxyLink(o.ProxyRTT)
			proxy, err := delayproxy.New(owner.addr, o.ProxyRTT/2)
			if err != nil {
				rep.Runs = append(rep.Runs, SyncRun{Link: link, Services: n, Error: err.Error()})
			} else {
				for _, c := range o.settings() {
					r := syncOnce(ctx, o, ids[localTD], proxy.Addr(), n, c, link, max(o.ProxyBudget, 0))
					report(progress, r)
					rep.Runs = append(rep.Runs, r)
				}
				proxy.Close()
			}
		}
		_ = owner.stop()
		os.RemoveAll(dir)
	}
	if o.NoNetem {
		rep.NetemSkipped = "not asked for"
		return rep
	}
	rep.NetemSkipped = netemRuns(ctx, o, ids, progress, &rep.Runs)
	if rep.NetemSkipped != "" {
		fmt.Fprintf(progress, "sync over a %s RTT link: skipped: %s\n", 2*o.NetemDelay, rep.NetemSkipped)
	}
	return rep
}

// proxyLink names the link through the latency proxy.
func proxyLink(rtt time.Duration) string {
	return fmt.Sprintf("loopback+proxy %s RTT", rtt)
}

func report(progress io.Writer, r SyncRun) {
	ms, perService := r.outcome()
	if r.Error == "" {
		ms += " ms (" + perService + " ms/service)"
	}
	how := "plain Hamlet"
	if r.Negotiated != "" {
		how = r.Negotiated
	}
	fmt.Fprintf(progress, "sync of %d services over %s, %s (%s): %s\n", r.Services, r.Link, r.setting(), how, ms)
}

// setting is the window and services per response the run negotiated, as
// the reports name it.
func (r SyncRun) setting() string {
	if r.ServicesPerResponse > 1 {
		return fmt.Sprintf("window %d, %d services per response", r.Window, r.ServicesPerResponse)
	}
	return fmt.Sprintf("window %d", r.Window)
}

// outcome is how long the run took, in ms in all and per service, as the
// report shows it: FAILED with the error, or extrapolated from the
// services imported when the run was stopped.
func (r SyncRun) outcome() (ms, perService string) {
	switch {
	case r.Error != "":
		return "FAILED: " + r.Error, ""
	case r.Extrapolated:
		return fmt.Sprintf("%.0f (extrapolated from %d)", r.Ms, r.Imported), fmt.Sprintf("%.3f", r.PerServiceMs)
	}
	return fmt.Sprintf("%.0f", r.Ms), fmt.Sprintf("%.3f", r.PerServiceMs)
}

// syncOnce starts a consumer with an empty store against the owner at addr
// and times its initial sync; with a budget, a sync still going after it
// is stopped and its time extrapolated.
func syncOnce(ctx context.Context, o *SyncOptions, id agentIdentity, addr string, n int, c consumerSetting, link string, budget time.Duration) (r SyncRun) {
	r = SyncRun{Link: link, Services: n, Window: min(c.window, ownerWindow), ServicesPerResponse: min(c.perResponse, config.DefaultMaxBatch)}
	dir, err := os.MkdirTemp(o.StoreDir, "meshfed-bench-consumer-")
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	a, err := startAgent(agentConfig{Dial: addr, Window: c.window, ServicesPerResponse: c.perResponse, Plain: c.plain, StoreDir: dir, Identity: id})
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer a.stop()
	// Read while the stream is up: what was negotiated, not configured.
	defer func() { r.Negotiated = a.negotiated() }()
	deadline := t0.Add(o.Timeout)
	for a.catalog.ImportCount(peerName) < n {
		if got := a.catalog.ImportCount(peerName); budget > 0 && time.Since(t0) > budget && got > 0 {
			r.Extrapolated, r.Imported = true, got
			r.Ms = ms(time.Since(t0)) * float64(n) / float64(got)
			r.PerServiceMs = r.Ms / float64(n)
			return r
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.Error = fmt.Sprintf("%d of %d imported after %s", a.catalog.ImportCount(peerName), n, time.Since(t0).Round(time.Millisecond))
			return r
		}
		time.Sleep(time.Millisecond)
	}
	r.Ms = ms(time.Since(t0))
	r.PerServiceMs = r.Ms / float64(n)
	return r
}

// netemRuns runs the syncs over a veth pair with netem, the owner in a
// network namespace of its own, and returns why it could not, if so.
func netemRuns(ctx context.Context, o *SyncOptions, ids map[string]agentIdentity, progress io.Writer, runs *[]SyncRun) string {
	if os.Geteuid() != 0 {
		return "not running as root (network namespaces and tc need it)"
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("%s not found (apt-get install -y iproute2)", tool)
		}
	}
	nl, err := newNetLink(o.NetemDelay)
	if err != nil {
		return err.Error()
	}
	defer nl.remove()
	link := fmt.Sprintf("veth + netem %s RTT", 2*o.NetemDelay)
	if o.NetemDelay < 0 {
		link = "veth, no netem"
	}
	for _, n := range o.Services {
		owner, err := startRemoteOwner(nl, ids[peerTD], n)
		if err != nil {
			*runs = append(*runs, SyncRun{Link: link, Services: n, Error: err.Error()})
			continue
		}
		for _, c := range o.settings() {
			r := syncOnce(ctx, o, ids[localTD], owner.addr, n, c, link, 0)
			report(progress, r)
			*runs = append(*runs, r)
		}
		owner.stop()
	}
	return ""
}

// netLink is a network namespace reached over a veth pair, with netem
// delaying each direction.
type netLink struct {
	ns, outer, inner string
	outerIP, innerIP string
}

func newNetLink(delay time.Duration) (*netLink, error) {
	id := os.Getpid() % 100000
	nl := &netLink{
		ns:      fmt.Sprintf("meshfed-bench-%d", id),
		outer:   fmt.Sprintf("mfb%da", id),
		inner:   fmt.Sprintf("mfb%db", id),
		outerIP: "10.254.77.1",
		innerIP: "10.254.77.2",
	}
	steps := [][]string{
		{"ip", "netns", "add", nl.ns},
		{"ip", "link", "add", nl.outer, "type", "veth", "peer", "name", nl.inner},
		{"ip", "link", "set", nl.inner, "netns", nl.ns},
		{"ip", "addr", "add", nl.outerIP + "/30", "dev", nl.outer},
		{"ip", "link", "set", nl.outer, "up"},
		{"ip", "-n", nl.ns, "addr", "add", nl.innerIP + "/30", "dev", nl.inner},
		{"ip", "-n", nl.ns, "link", "set", nl.inner, "up"},
		{"ip", "-n", nl.ns, "link", "set", "lo", "up"},
	}
	if delay > 0 {
		d := fmt.Sprintf("%dus", delay.Microseconds())
		steps = append(steps,
			[]string{"tc", "qdisc", "add", "dev", nl.outer, "root", "netem", "delay", d},
			[]string{"ip", "netns", "exec", nl.ns, "tc", "qdisc", "add", "dev", nl.inner, "root", "netem", "delay", d})
	}
	for _, s := range steps {
		out, err := exec.Command(s[0], s[1:]...).CombinedOutput()
		if err != nil {
			nl.remove()
			why := strings.TrimSpace(string(out))
			if strings.Contains(why, "qdisc kind is unknown") {
				why += " (the kernel has no sch_netem module)"
			}
			return nil, fmt.Errorf("%s: %s", strings.Join(s, " "), why)
		}
	}
	return nl, nil
}

// remove deletes the namespace, which takes its end of the veth pair, and
// with it the pair.
func (nl *netLink) remove() {
	_ = exec.Command("ip", "netns", "del", nl.ns).Run()
	_ = exec.Command("ip", "link", "del", nl.outer).Run()
}

// remoteOwner is an owner agent in a child process inside the namespace.
type remoteOwner struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startRemoteOwner(nl *netLink, id agentIdentity, n int) (*remoteOwner, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", nl.ns, exe)
	cmd.Env = append(os.Environ(), childEnv+"=agent")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ro := &remoteOwner{cmd: cmd, stdin: stdin}
	cfg, err := json.Marshal(agentConfig{Owner: true, Exports: n, Listen: nl.innerIP + ":0", Window: ownerWindow, ServicesPerResponse: config.DefaultMaxBatch, Identity: id})
	if err != nil {
		ro.stop()
		return nil, err
	}
	if _, err := stdin.Write(append(cfg, '\n')); err != nil {
		ro.stop()
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		ro.stop()
		return nil, errors.Join(fmt.Errorf("owner agent in namespace %s: %w", nl.ns, err), errors.New(strings.TrimSpace(stderr.String())))
	}
	ro.addr = strings.TrimSpace(line)
	return ro, nil
}

func (ro *remoteOwner) stop() {
	_ = ro.stdin.Close()
	_ = ro.cmd.Wait()
}
