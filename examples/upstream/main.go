// Command upstream is the sample service of the docker-compose example: an
// HTTP server that answers every GET with a small JSON document saying which
// service and mesh answered, the Host and path it was asked for, and the
// request headers that show how the request travelled (those the gateways
// add). It runs as inventory in mesh-a and as payments in mesh-b.
//
//	upstream -listen :8080 -name payments -mesh mesh-b
//
// Every flag has an environment variable: LISTEN, SERVICE_NAME, MESH.
// With -probe URL it instead fetches URL once and exits 0 on a 2xx answer,
// which serves as a container health check in images without curl.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Reply is the JSON answer to a request.
type Reply struct {
	Service string `json:"service"`
	Mesh    string `json:"mesh"`
	// Host is the request's Host header, as the service received it.
	Host string `json:"host"`
	Path string `json:"path"`
	// Headers holds those of headersOfInterest the request carried, by
	// lower-case name; several values are joined with ", ".
	Headers map[string]string `json:"headers"`
}

// headersOfInterest are the request headers the reply shows: the client's,
// and those proxies add on the way.
var headersOfInterest = []string{
	"user-agent",
	"x-forwarded-client-cert",
	"x-forwarded-for",
	"x-forwarded-proto",
	"x-request-id",
	"x-envoy-expected-rq-timeout-ms",
	"x-envoy-original-path",
}

// handler answers GET and HEAD on every path with a Reply, and /healthz
// with "ok".
func handler(service, mesh string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		reply := Reply{Service: service, Mesh: mesh, Host: r.Host, Path: r.URL.Path, Headers: map[string]string{}}
		for _, h := range headersOfInterest {
			if v := r.Header.Values(h); len(v) > 0 {
				reply.Headers[h] = strings.Join(v, ", ")
			}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reply)
	})
	return mux
}

// newServer is the HTTP server of handler, with timeouts so that a slow
// client cannot hold a connection forever.
func newServer(service, mesh string) *http.Server {
	return &http.Server{
		Handler:           handler(service, mesh),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
}

// serve runs srv on lis until ctx ends, then shuts it down gracefully.
func serve(ctx context.Context, srv *http.Server, lis net.Listener) error {
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(lis) }()
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errs; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// probe fetches url once and fails unless the answer is 2xx.
func probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func main() {
	listen := flag.String("listen", envOr("LISTEN", ":8080"), "address to listen on (env LISTEN)")
	name := flag.String("name", envOr("SERVICE_NAME", "upstream"), "service name shown in replies (env SERVICE_NAME)")
	mesh := flag.String("mesh", envOr("MESH", ""), "mesh name shown in replies (env MESH)")
	probeURL := flag.String("probe", "", "fetch this URL once and exit 0 on a 2xx answer, for health checks")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *probeURL != "" {
		if err := probe(ctx, *probeURL); err != nil {
			fmt.Fprintln(os.Stderr, "upstream: probe:", err)
			os.Exit(1)
		}
		return
	}

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("upstream: %v", err)
	}
	log.Printf("upstream: %s (mesh %q) listening on %s", *name, *mesh, lis.Addr())
	if err := serve(ctx, newServer(*name, *mesh), lis); err != nil {
		log.Fatalf("upstream: %v", err)
	}
}
