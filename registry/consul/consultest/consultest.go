// Package consultest starts real Consul agents for tests, in dev mode on
// random loopback ports, one per call, stopped when the test ends.
//
// The binary is $MESHFED_CONSUL, else consul on PATH, else what
// scripts/install-consul.sh put in the module's tools/consul. Without one
// the test is skipped, loudly; with MESHFED_REQUIRE_CONSUL=1 (CI) it fails.
package consultest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

const (
	// EnvBinary names the consul binary to use.
	EnvBinary = "MESHFED_CONSUL"
	// EnvRequire=1 turns a missing binary from a skip into a failure.
	EnvRequire = "MESHFED_REQUIRE_CONSUL"
	// Datacenter is every agent's datacenter.
	Datacenter = "dc1"
	// startTimeout bounds the wait for a leader (and ACLs): generous, as a
	// loaded machine is slow, and only a broken agent reaches it.
	startTimeout = 60 * time.Second
)

// Agent is a running Consul agent.
type Agent struct {
	HTTPAddr string // host:port of the HTTP API
	DNSAddr  string // host:port of the DNS interface (UDP and TCP)
	// MasterToken is the ACL master token, when ACLs are enabled.
	MasterToken string
	Dir         string // its configuration and log
	bin         string
	cmd         *exec.Cmd
	exited      chan struct{}
	stopOnce    *sync.Once
}

// launch starts the agent from its configuration in Dir and waits until
// it is ready.
func (a *Agent) launch() error {
	logFile, err := os.OpenFile(filepath.Join(a.Dir, "consul.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(a.bin, "agent", "-dev", "-config-file", filepath.Join(a.Dir, "config.json"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	a.cmd, a.exited, a.stopOnce = cmd, make(chan struct{}), &sync.Once{}
	exited := a.exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := a.waitReady(); err != nil {
		a.Stop()
		return fmt.Errorf("%w\n%s", err, a.logTail(40))
	}
	return nil
}

// Restart stops the agent and starts it again on the same addresses,
// empty: a dev agent keeps its catalog in memory only, as a Consul that
// lost its data would come back.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.Stop()
	if err := a.launch(); err != nil {
		t.Fatalf("consul agent restart: %v", err)
	}
}

// Binary returns the consul binary to use, or skips or fails t.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", EnvBinary, p, err)
		}
		return p
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	if p := installed(); p != "" {
		return p
	}
	msg := "NO CONSUL BINARY: this test needs a real Consul agent. Run scripts/install-consul.sh tools/consul " +
		"(or make test), or set " + EnvBinary + " to a consul binary."
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg + " (" + EnvRequire + "=1)")
	}
	t.Skip(msg)
	return ""
}

// installed finds tools/consul/usr/bin/consul at the module root, so that
// a plain go test finds what make installed.
func installed() string {
	dir, err := os.Getwd()
	for err == nil {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "tools", "consul", "usr", "bin", "consul")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
	return ""
}

// Start starts a dev agent without ACLs.
func Start(t testing.TB) *Agent {
	t.Helper()
	return start(t, "")
}

// StartACL starts a dev agent whose ACLs deny by default, with masterToken
// as the master (and the agent's own) token.
func StartACL(t testing.TB, masterToken string) *Agent {
	t.Helper()
	return start(t, masterToken)
}

func start(t testing.TB, masterToken string) *Agent {
	t.Helper()
	bin := Binary(t)
	var err error
	// A port picked free may be taken before the agent binds it: try again.
	for attempt := range 3 {
		var a *Agent
		if a, err = launch(t, bin, masterToken, attempt); err == nil {
			return a
		}
		t.Logf("consul agent did not start (attempt %d): %v", attempt+1, err)
	}
	t.Fatalf("consul agent: %v", err)
	return nil
}

func launch(t testing.TB, bin, masterToken string, attempt int) (*Agent, error) {
	dir := filepath.Join(t.TempDir(), "consul"+strconv.Itoa(attempt))
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"datacenter":           Datacenter,
		"node_name":            "consultest",
		"data_dir":             filepath.Join(dir, "data"),
		"bind_addr":            "127.0.0.1",
		"client_addr":          "127.0.0.1",
		"disable_update_check": true, // it would call out to the internet
		"log_level":            "INFO",
		"ports": map[string]int{
			"http": ports[0], "dns": ports[1], "serf_lan": ports[2], "serf_wan": ports[3], "server": ports[4], "grpc": ports[5],
		},
	}
	if masterToken != "" {
		cfg["acl"] = map[string]any{
			"enabled":        true,
			"default_policy": "deny",
			"tokens":         map[string]string{"master": masterToken, "agent": masterToken},
		}
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		return nil, err
	}
	a := &Agent{
		HTTPAddr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		DNSAddr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		MasterToken: masterToken,
		Dir:         dir,
		bin:         bin,
	}
	if err := a.launch(); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consul agent log (last lines):\n%s", a.logTail(60))
		}
		a.Stop()
	})
	return a, nil
}

// waitReady waits for a leader, and with ACLs for the master token to be
// accepted: until then writes fail in ways tests must not see.
func (a *Agent) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-a.exited:
			return fmt.Errorf("consul exited: %v", a.cmd.ProcessState)
		default:
		}
		if a.ready() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no leader after %s", startTimeout)
}

func (a *Agent) ready() bool {
	get := func(path string) (string, bool) {
		req, err := http.NewRequest(http.MethodGet, "http://"+a.HTTPAddr+path, nil)
		if err != nil {
			return "", false
		}
		if a.MasterToken != "" {
			req.Header.Set("X-Consul-Token", a.MasterToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", false
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		return b.String(), resp.StatusCode == http.StatusOK
	}
	if leader, ok := get("/v1/status/leader"); !ok || leader == `""` || leader == "" {
		return false
	}
	if a.MasterToken != "" {
		if _, ok := get("/v1/acl/token/self"); !ok {
			return false
		}
	}
	// The agent's own node is in the catalog once it has synced, which
	// services registered through the agent API need. Consul answers 200
	// with "null" for a node it does not know yet.
	node, ok := get("/v1/catalog/node/consultest")
	return ok && strings.TrimSpace(node) != "null"
}

// Stop stops the agent, as the end of the test also does; a test calls it
// to see how its subject copes with Consul gone.
func (a *Agent) Stop() {
	a.stopOnce.Do(func() {
		_ = a.cmd.Process.Signal(os.Interrupt)
		select {
		case <-a.exited:
		case <-time.After(15 * time.Second):
			_ = a.cmd.Process.Kill()
			<-a.exited
		}
	})
}

func (a *Agent) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(a.Dir, "consul.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Client returns an API client of the agent that uses token.
func (a *Agent) Client(t testing.TB, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// freePorts returns n distinct loopback ports free for TCP and UDP now.
func freePorts(n int) ([]int, error) {
	var out []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		p := l.Addr().(*net.TCPAddr).Port
		// Serf and DNS bind UDP on the same port.
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		_ = u.Close()
		out = append(out, p)
	}
	return out, nil
}
