package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Reply is the JSON answer of the HTTP server.
type Reply struct {
	Service string `json:"service"`
	// Host is the Host header as the server received it.
	Host string `json:"host"`
	Path string `json:"path"`
	// Proto is HTTP/1.1 or HTTP/2.0.
	Proto string `json:"proto"`
	// Headers are the request headers, lower-case names, values joined
	// with ", ".
	Headers map[string]string `json:"headers"`
}

// HTTP starts an HTTP server that speaks HTTP/1.1 and HTTP/2 without TLS
// (h2c) on addr (127.0.0.1:0 when empty). It answers:
//   - /ws: a WebSocket that echoes every message;
//   - /bytes/N: N bytes of 'x';
//   - /sleep/D: the Reply after sleeping D (a Go duration);
//   - anything else: the Reply as JSON.
func HTTP(name, addr string) (*Server, error) {
	l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: httpHandler(name), Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	s := &Server{Name: name, listener: l}
	s.close = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// WebSockets are hijacked connections Shutdown does not wait for.
		err := srv.Shutdown(ctx)
		if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
			return serr
		}
		return err
	}
	return s, nil
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func httpHandler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(kind, msg); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write([]byte(strings.Repeat("x", n)))
	})
	mux.HandleFunc("/sleep/{d}", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.PathValue("d"))
		if err != nil {
			http.Error(w, "bad duration", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		reply(w, r, name)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { reply(w, r, name) })
	return mux
}

func reply(w http.ResponseWriter, r *http.Request, name string) {
	rep := Reply{Service: name, Host: r.Host, Path: r.URL.Path, Proto: r.Proto, Headers: map[string]string{}}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rep.Headers[strings.ToLower(k)] = strings.Join(r.Header.Values(k), ", ")
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rep)
}

// HTTPS starts the same server as HTTP behind TLS with cfg, on addr
// (127.0.0.1:0 when empty).
func HTTPS(name, addr string, cfg *tls.Config) (*Server, error) {
	l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: httpHandler(name), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(l, cfg)) }()
	s := &Server{Name: name, listener: l}
	s.close = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
			return serr
		}
		return err
	}
	return s, nil
}

// serveOneRequest reads one HTTP/1.1 request from c and answers it with h.
func serveOneRequest(c net.Conn, h http.Handler) {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Close = true
	_ = resp.Write(c)
}
