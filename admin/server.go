// Package admin is the agent's admin HTTP server (health, readiness,
// metrics, a read-only JSON API and, when asked for, pprof) and the client
// that the meshfed commands read that API with.
package admin

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// shutdownGrace bounds how long Serve waits for requests in flight once its
// context is done; their contexts are cancelled at that moment.
const shutdownGrace = 5 * time.Second

// Options are what New needs. Errors name the agent configuration's fields
// (admin.listen), since that is where the values come from.
type Options struct {
	// Listen is an IP literal and a port.
	Listen string
	// AllowNonLoopback permits Listen to be other than a loopback address:
	// the API shows the federation's topology, so exposing it is a
	// deliberate choice.
	AllowNonLoopback bool
	// Gatherer serves /metrics. Required.
	Gatherer prometheus.Gatherer
	// Ready says whether the agent is ready (/readyz). Required.
	Ready func() error
	// Degraded lists what works less than it should while the agent is
	// ready; /readyz still answers 200, with each reason on a line of its
	// own after "ok". nil is never degraded.
	Degraded func() []string
	// Live says whether the agent is alive (/healthz); nil is always.
	Live func() error
	// Status, Imports and Exports answer /api/v1/status, /api/v1/imports and
	// /api/v1/exports with a value marshalled as JSON; nil leaves the
	// endpoint out (404).
	Status  func(ctx context.Context) (any, error)
	Imports func(ctx context.Context) (any, error)
	Exports func(ctx context.Context) (any, error)
	// Gateways answers /api/v1/gateways; nil leaves it out.
	Gateways func(ctx context.Context) (any, error)
	// ConfigDump answers /api/v1/gateways/{node}/config_dump[?type=T]
	// with what the gateway of that node id is served (of type T only:
	// clusters, endpoints, listeners, scopedRoutes or secrets), private keys
	// redacted; an error that wraps ErrNotFound answers 404, one that
	// wraps ErrBadRequest 400. nil leaves it out.
	ConfigDump func(ctx context.Context, node, typ string) (any, error)
	// Reload, when set, serves POST /api/v1/reload to requests from
	// loopback only: it re-reads the configuration file. An error that
	// wraps ErrInvalid (the file does not pass the check) answers 422.
	Reload func(ctx context.Context) (any, error)
	// Plan, when set, serves POST /api/v1/plan, guarded as Reload is:
	// what a reload of the configuration the request names (the agent's
	// own when it names none) would change, computed without applying
	// anything. Its errors map as Reload's do, ErrBadRequest to 400.
	Plan func(ctx context.Context, req PlanRequest) (any, error)
	// StoreBackup, when set, serves GET /api/v1/store/backup to requests
	// from loopback only: a consistent copy of the agent's store, taken
	// while it runs. It calls open with the copy's size, then writes the
	// copy to the writer open returns; an error before open answers 500,
	// one after it cuts the answer short of its Content-Length.
	StoreBackup func(ctx context.Context, open func(size int64) io.Writer) error
	// LogLevel, when set, is read and changed by GET and PUT
	// /api/v1/loglevel, from loopback only ({"level": "debug"}): the level
	// says how much of the agent's work is written down, which is for the
	// operator on the host to change.
	LogLevel *zap.AtomicLevel
	// PProf serves /debug/pprof/; off by default, as profiles reveal
	// memory contents. Like the rest of the API, only to loopback or to
	// a client with the token.
	PProf bool
	// TokenFile (admin.tokenFile) holds the bearer token that a client
	// beyond loopback must present for anything but the probes; required
	// with AllowNonLoopback. Read once, by New.
	TokenFile string
	// Hosts (admin.hosts) are names accepted in the Host header besides
	// localhost and the IP addresses of Listen.
	Hosts []string
	Log   *zap.Logger
}

// Server is the admin HTTP server.
type Server struct {
	listen  string
	log     *zap.Logger
	handler http.Handler
	// patterns are the routes served, as "METHOD /path".
	patterns []string
}

// OpenAPI documents every route of the admin API; a test checks it against
// the handlers.
//
//go:embed openapi.yaml
var OpenAPI []byte

// New checks opts and builds the routes; nothing listens yet.
func New(opts Options) (*Server, error) {
	if err := CheckListen(opts.Listen, opts.AllowNonLoopback); err != nil {
		return nil, err
	}
	if opts.Gatherer == nil {
		return nil, errors.New("admin: Options.Gatherer is nil")
	}
	if opts.Ready == nil {
		return nil, errors.New("admin: Options.Ready is nil")
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	var token string
	switch {
	case opts.TokenFile != "":
		t, err := ReadToken(opts.TokenFile)
		if err != nil {
			return nil, err
		}
		token = t
	case opts.AllowNonLoopback:
		return nil, errors.New("admin.tokenFile: required with admin.allowNonLoopback: other hosts must present a bearer token, read from this file")
	}
	s := &Server{listen: opts.Listen, log: opts.Log}
	s.handler = newGuard(opts, token).wrap(s.routes(opts))
	return s, nil
}

// CheckListen refuses an admin address that New would: one that is not
// an IP literal and port, or that other hosts reach without
// allowNonLoopback.
func CheckListen(listen string, allowNonLoopback bool) error {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %q is not an IP address and port such as 127.0.0.1:19100", listen)
	}
	if !ap.Addr().Unmap().IsLoopback() && !allowNonLoopback {
		return fmt.Errorf("admin.listen: %q is not a loopback address; set admin.allowNonLoopback to serve other hosts", listen)
	}
	return nil
}

// routes uses method patterns: "GET" also matches HEAD, and the mux answers
// other methods with 405 and an Allow header.
func (s *Server) routes(opts Options) http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler) {
		s.patterns = append(s.patterns, pattern)
		mux.Handle(pattern, h)
	}
	handle("GET /healthz", probe(opts.Live, nil))
	handle("GET /readyz", probe(opts.Ready, opts.Degraded))
	handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(s.log)}))
	for _, r := range []struct {
		path string
		fn   func(context.Context) (any, error)
	}{
		{"/api/v1/status", opts.Status},
		{"/api/v1/imports", opts.Imports},
		{"/api/v1/exports", opts.Exports},
		{"/api/v1/gateways", opts.Gateways},
	} {
		if fn := r.fn; fn != nil {
			handle("GET "+r.path, s.api(func(ctx context.Context, _ *http.Request) (any, error) { return fn(ctx) }))
		}
	}
	if fn := opts.ConfigDump; fn != nil {
		handle("GET /api/v1/gateways/{node}/config_dump", s.api(func(ctx context.Context, r *http.Request) (any, error) {
			return fn(ctx, r.PathValue("node"), r.URL.Query().Get("type"))
		}))
	}
	if fn := opts.Reload; fn != nil {
		handle("POST /api/v1/reload", changesState(s.api(func(ctx context.Context, _ *http.Request) (any, error) { return fn(ctx) })))
	}
	if fn := opts.Plan; fn != nil {
		handle("POST /api/v1/plan", s.plan(fn))
	}
	if fn := opts.StoreBackup; fn != nil {
		handle("GET /api/v1/store/backup", loopbackOnly(s.storeBackup(fn)))
	}
	if opts.LogLevel != nil {
		level := s.levelHandler(opts.LogLevel)
		handle("GET /api/v1/loglevel", loopbackOnly(level))
		handle("PUT /api/v1/loglevel", changesState(level))
	}
	if opts.PProf {
		handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
		handle("GET /debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
		handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		handle("GET /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	}
	return mux
}

// storeBackup streams the copy fn writes, with its length, so that a
// client tells a copy cut short from a whole one.
func (s *Server) storeBackup(fn func(context.Context, func(int64) io.Writer) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		started := false
		err := fn(r.Context(), func(size int64) io.Writer {
			started = true
			h := w.Header()
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Length", strconv.FormatInt(size, 10))
			h.Set("Content-Disposition", `attachment; filename="meshfed.db"`)
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			return w
		})
		switch {
		case err == nil:
		case !started:
			s.writeJSON(w, r, http.StatusInternalServerError, errorBody{Error: err.Error()})
		default:
			s.log.Error("store backup cut short", zap.Error(err))
			panic(http.ErrAbortHandler) // the client sees the answer end early
		}
	}
}

// Patterns are the routes the server serves, as "METHOD /path", in the
// order they were added.
func (s *Server) Patterns() []string { return slices.Clone(s.patterns) }

// Handler serves the routes, for callers that run their own http.Server.
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds Options.Listen.
func (s *Server) Listen() (net.Listener, error) {
	lis, err := net.Listen("tcp", s.listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	return lis, nil
}

// Serve serves on lis until ctx is done, then shuts down gracefully; it
// closes lis. The requests' contexts end with ctx, so that a slow Status or
// a running profile does not hold the shutdown up.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// A body is at most MaxBodyBytes: it is read well within this.
		ReadTimeout:    30 * time.Second,
		MaxHeaderBytes: maxHeaderBytes,
		IdleTimeout:    2 * time.Minute,
		ErrorLog:       zap.NewStdLog(s.log),
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	s.log.Info("serving the admin API", zap.Stringer("address", lis.Addr()))
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serving on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		s.log.Warn("admin requests still in flight at shutdown; closing their connections", zap.Error(err))
		if err := srv.Close(); err != nil {
			return fmt.Errorf("admin: closing: %w", err)
		}
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serving on %s: %w", lis.Addr(), err)
	}
	return nil
}

// maxHeaderBytes bounds a request's headers, against net/http's 1 MB
// default: an operator's requests carry a token at most.
const maxHeaderBytes = 64 << 10

// loopbackOnly answers 403 to a request that does not come from this
// host's loopback, whatever address the server listens on.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopback(r) {
			refuse(w, http.StatusForbidden, r.URL.Path+" answers requests from loopback only")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// probe answers 200 "ok" while check passes, and 503 with its error
// otherwise; a nil check always passes. What degraded lists follows "ok",
// "degraded: " and one reason a line: a probe that only reads the status
// sees a ready agent, an operator who reads the body sees why it is not
// whole. A client beyond loopback without the token (a kubelet, a load
// balancer) is told only "ok" or "not ready": the reasons name addresses
// and peers.
func probe(check func() error, degraded func() []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		detail := isTrusted(r)
		if check != nil {
			if err := check(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				msg := "not ready"
				if detail {
					msg = err.Error()
				}
				_, _ = fmt.Fprintln(w, msg)
				return
			}
		}
		_, _ = fmt.Fprintln(w, "ok")
		if degraded != nil && detail {
			for _, why := range degraded() {
				_, _ = fmt.Fprintln(w, "degraded: "+why)
			}
		}
	}
}
