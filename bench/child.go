package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// The harness runs parts of itself in child processes of the same binary:
// the simulated gateways (so that their memory and CPU are not counted as
// the control plane's) and, for the netem link, the remote agent. The
// binary's main (and a test's TestMain) must call Child first.

const childEnv = "MESHFED_BENCH_CHILD"

// Child runs the child role this process was started for, if any, and
// reports whether it was one; the caller should then exit with the code.
func Child() (code int, isChild bool) {
	switch os.Getenv(childEnv) {
	case "":
		return 0, false
	case "fleet":
		if err := serveFleet(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "meshfed-bench fleet:", err)
			return 1, true
		}
		return 0, true
	case "agent":
		if err := serveAgent(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "meshfed-bench agent:", err)
			return 1, true
		}
		return 0, true
	}
	fmt.Fprintf(os.Stderr, "meshfed-bench: unknown %s=%q\n", childEnv, os.Getenv(childEnv))
	return 2, true
}

// fleetMsg is a request to the fleet process, its reply, or an event.
type fleetMsg struct {
	Op      string         `json:"op"`
	Config  *fleetConfig   `json:"config,omitempty"`
	Expects []Expect       `json:"expects,omitempty"`
	Counts  map[string]int `json:"counts,omitempty"`
	Want    *checkWant     `json:"want,omitempty"`
	Stats   *fleetStats    `json:"stats,omitempty"`
	Check   *CheckResult   `json:"check,omitempty"`
	Change  uint64         `json:"change,omitempty"`
	At      int64          `json:"at,omitempty"` // Unix nanoseconds
	Err     string         `json:"err,omitempty"`
}

// serveFleet runs a localFleet for the parent: requests on r, replies and
// events on w, until r ends.
func serveFleet(r io.Reader, w io.Writer) error {
	f := newLocalFleet()
	defer f.close()
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	var mu sync.Mutex
	send := func(m fleetMsg) error {
		mu.Lock()
		defer mu.Unlock()
		if err := enc.Encode(m); err != nil {
			return err
		}
		return bw.Flush()
	}
	go func() {
		for e := range f.events() {
			if send(fleetMsg{Op: "event", Change: e.Change, At: e.At.UnixNano(), Err: e.Err}) != nil {
				return
			}
		}
	}()
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	for {
		var m fleetMsg
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		reply := fleetMsg{Op: "reply"}
		var err error
		switch m.Op {
		case "connect":
			err = f.connect(*m.Config)
		case "expect":
			err = f.expect(m.Expects)
		case "sync":
			err = f.expectSync(m.Counts)
		case "disconnect":
			err = f.disconnect()
		case "reconnect":
			err = f.reconnect()
		case "stats":
			var s fleetStats
			s, err = f.stats()
			reply.Stats = &s
		case "check":
			var c CheckResult
			c, err = f.check(*m.Want)
			reply.Check = &c
		default:
			err = fmt.Errorf("unknown op %q", m.Op)
		}
		if err != nil {
			reply.Err = err.Error()
		}
		if err := send(reply); err != nil {
			return err
		}
	}
}

// processFleet runs the gateways in a child process.
type processFleet struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	enc     *json.Encoder
	ev      chan fleetEvent
	replies chan fleetMsg
	done    chan struct{}
	mu      sync.Mutex // one request at a time
}

func startProcessFleet() (*processFleet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=fleet")
	if os.Getenv("GOGC") == "" {
		// The gateways decode every resource they get: collect their
		// garbage less often, so that they leave the control plane more of
		// the machine.
		cmd.Env = append(cmd.Env, "GOGC=400")
	}
	cmd.Stderr = os.Stderr
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
	p := &processFleet{cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), ev: make(chan fleetEvent, 1<<16), replies: make(chan fleetMsg), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		dec := json.NewDecoder(bufio.NewReaderSize(stdout, 1<<20))
		for {
			var m fleetMsg
			if err := dec.Decode(&m); err != nil {
				return
			}
			if m.Op == "event" {
				p.ev <- fleetEvent{Change: m.Change, At: time.Unix(0, m.At), Err: m.Err}
				continue
			}
			p.replies <- m
		}
	}()
	return p, nil
}

func (p *processFleet) call(m fleetMsg) (fleetMsg, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.enc.Encode(m); err != nil {
		return fleetMsg{}, fmt.Errorf("fleet process: %w", err)
	}
	select {
	case r := <-p.replies:
		if r.Err != "" {
			return r, errors.New(r.Err)
		}
		return r, nil
	case <-p.done:
		return fleetMsg{}, errFleetClosed
	}
}

func (p *processFleet) connect(cfg fleetConfig) error {
	_, err := p.call(fleetMsg{Op: "connect", Config: &cfg})
	return err
}

func (p *processFleet) expect(exps []Expect) error {
	_, err := p.call(fleetMsg{Op: "expect", Expects: exps})
	return err
}

func (p *processFleet) expectSync(counts map[string]int) error {
	_, err := p.call(fleetMsg{Op: "sync", Counts: counts})
	return err
}

func (p *processFleet) disconnect() error {
	_, err := p.call(fleetMsg{Op: "disconnect"})
	return err
}

func (p *processFleet) reconnect() error {
	_, err := p.call(fleetMsg{Op: "reconnect"})
	return err
}

func (p *processFleet) stats() (fleetStats, error) {
	r, err := p.call(fleetMsg{Op: "stats"})
	if err != nil {
		return fleetStats{}, err
	}
	return *r.Stats, nil
}

func (p *processFleet) check(want checkWant) (CheckResult, error) {
	r, err := p.call(fleetMsg{Op: "check", Want: &want})
	if err != nil {
		return CheckResult{}, err
	}
	return *r.Check, nil
}

func (p *processFleet) events() <-chan fleetEvent { return p.ev }

func (p *processFleet) close() error {
	_ = p.stdin.Close()
	err := p.cmd.Wait()
	<-p.done
	return err
}
