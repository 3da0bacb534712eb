// Package envoyrun runs real Envoy gateways from the bootstraps in
// envoy-configs, for the end-to-end tests, the demo and the bench: it finds
// the binary, starts the process on a rendered bootstrap, waits for its
// admin interface, reads what Envoy reports there (stats, config_dump,
// certificates, readiness), and stops it.
package envoyrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvBinary names the envoy binary to use, before PATH and tools/.
const EnvBinary = "MESHFED_ENVOY"

// ToolsPath is where scripts/install-envoy.sh puts Envoy under the module
// root (make test and make demo run it with tools/envoy).
const ToolsPath = "tools/envoy/bin/envoy"

// Binary finds the envoy binary: $MESHFED_ENVOY, else envoy on PATH, else
// what scripts/install-envoy.sh installed under the module root, looked for
// from the working directory up.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		return p, nil
	}
	dir, err := os.Getwd()
	for err == nil {
		if _, statErr := os.Stat(filepath.Join(dir, "go.mod")); statErr == nil {
			p := filepath.Join(dir, ToolsPath)
			if _, statErr := os.Stat(p); statErr == nil {
				return p, nil
			}
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no envoy binary: run scripts/install-envoy.sh tools/envoy (make test and make demo do), " +
		"put envoy on PATH, or set " + EnvBinary)
}

// Config says how to start one Envoy.
type Config struct {
	// Binary is the envoy executable; Binary() when empty.
	Binary string
	// Name tells this Envoy's files apart in Dir, e.g. "mesh-a-egress".
	Name string
	// Dir receives the bootstrap, the admin address and the log.
	Dir string
	// Bootstrap is the rendered bootstrap (envoyconfigs.Render).
	Bootstrap []byte
	// LogLevel defaults to "warning".
	LogLevel string
	// Concurrency is the number of worker threads; default 1, so that
	// several gateways share a small machine.
	Concurrency int
	// DrainTime is how long Envoy lets the connections of a filter chain
	// that changed or went away finish before it closes them;
	// DefaultDrainTime when zero.
	DrainTime time.Duration
}

// DefaultDrainTime bounds how long a caller the ingress no longer admits
// (a peer removed, an export withdrawn from it) keeps a connection it
// opened before: Envoy's own default is 10 minutes.
const DefaultDrainTime = 5 * time.Second

// Envoy is a running Envoy process.
type Envoy struct {
	name    string
	logPath string
	admin   string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stop    sync.Once
}

// Start starts Envoy and returns once its admin interface listens. ctx
// bounds the start only; Stop ends the process.
func Start(ctx context.Context, cfg Config) (*Envoy, error) {
	if cfg.Binary == "" {
		b, err := Binary()
		if err != nil {
			return nil, err
		}
		cfg.Binary = b
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warning"
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.DrainTime <= 0 {
		cfg.DrainTime = DefaultDrainTime
	}
	base := filepath.Join(cfg.Dir, cfg.Name)
	bootstrap, adminPath := base+".bootstrap.json", base+".admin"
	e := &Envoy{name: cfg.Name, logPath: base + ".log", exited: make(chan struct{})}
	if err := os.WriteFile(bootstrap, cfg.Bootstrap, 0o600); err != nil {
		return nil, err
	}
	_ = os.Remove(adminPath)
	log, err := os.Create(e.logPath)
	if err != nil {
		return nil, err
	}
	// Several gateways share a host: no hot restart, so no shared memory
	// region whose base id would have to differ between them. Access logs
	// are flushed every 200 ms instead of 10 s, so that a line is there
	// soon after its connection ended.
	e.cmd = exec.Command(cfg.Binary, "-c", bootstrap, "--admin-address-path", adminPath,
		"--disable-hot-restart", "--concurrency", fmt.Sprint(cfg.Concurrency), "-l", cfg.LogLevel,
		"--file-flush-interval-msec", "200",
		"--drain-time-s", strconv.Itoa(max(1, int(cfg.DrainTime/time.Second))))
	e.cmd.Stdout, e.cmd.Stderr = log, log
	if err := e.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", cfg.Binary, err)
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		log.Close()
		close(e.exited)
	}()
	if err := e.waitAdmin(ctx, adminPath); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

// waitAdmin waits until Envoy wrote the address its admin listens on.
func (e *Envoy) waitAdmin(ctx context.Context, path string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			e.admin = strings.TrimSpace(string(b))
			return nil
		}
		select {
		case <-e.exited:
			return fmt.Errorf("envoy %s exited at start (%v): %s", e.name, e.waitErr, e.LogTail(20))
		case <-ctx.Done():
			return fmt.Errorf("envoy %s: no admin address after start: %w", e.name, ctx.Err())
		case <-tick.C:
		}
	}
}

// Name is the name given in Config.
func (e *Envoy) Name() string { return e.name }

// Admin is the host:port of the admin interface.
func (e *Envoy) Admin() string { return e.admin }

// LogPath is the file Envoy's output goes to.
func (e *Envoy) LogPath() string { return e.logPath }

// LogTail returns up to the last n lines of the log.
func (e *Envoy) LogTail(n int) string {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Exited is closed when the process has ended.
func (e *Envoy) Exited() <-chan struct{} { return e.exited }

// Pid is the process id.
func (e *Envoy) Pid() int { return e.cmd.Process.Pid }

// Stop ends Envoy: SIGTERM, then SIGKILL after 10 s. It returns nil when
// Envoy exited on the signal, and may be called more than once.
func (e *Envoy) Stop() error {
	var err error
	e.stop.Do(func() {
		select {
		case <-e.exited:
		default:
			_ = e.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-e.exited:
			case <-time.After(10 * time.Second):
				_ = e.cmd.Process.Kill()
				<-e.exited
				err = fmt.Errorf("envoy %s did not stop on SIGTERM within 10s", e.name)
				return
			}
		}
		var exit *exec.ExitError
		if e.waitErr != nil && !(errors.As(e.waitErr, &exit) && exit.ExitCode() <= 0) {
			err = fmt.Errorf("envoy %s: %w", e.name, e.waitErr)
		}
	})
	return err
}
