package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// MaxBodyBytes bounds a request's body: the API takes nothing larger than
// a log level.
const MaxBodyBytes = 1 << 20

// MinTokenBytes is the shortest bearer token admin.tokenFile may hold: 32
// bytes, such as 16 random bytes in hex, cannot be guessed.
const MinTokenBytes = 32

// ReadToken reads the bearer token in path (admin.tokenFile): the file's
// content without surrounding white space, at least MinTokenBytes long.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin.tokenFile: %w", err)
	}
	token := strings.TrimSpace(string(b))
	switch {
	case len(token) < MinTokenBytes:
		return "", fmt.Errorf("admin.tokenFile: %s holds %d bytes; a token needs at least %d (openssl rand -hex 32 > %s)", path, len(token), MinTokenBytes, path)
	case strings.ContainsAny(token, " \t\r\n"):
		return "", fmt.Errorf("admin.tokenFile: %s holds white space within the token; write the token alone", path)
	}
	return token, nil
}

// guard holds what every request is checked against before a route sees
// it.
type guard struct {
	// listen is the address of admin.listen; any IP address is accepted
	// as Host when it is unspecified.
	listen netip.Addr
	// hosts are the further names accepted as Host, lower case.
	hosts []string
	// token is the sha256 of admin.tokenFile's token; nil when there is
	// none, and then a client beyond loopback gets nothing but probes.
	token []byte
}

func newGuard(opts Options, token string) *guard {
	g := &guard{}
	if ap, err := netip.ParseAddrPort(opts.Listen); err == nil {
		g.listen = ap.Addr().Unmap()
	}
	for _, h := range opts.Hosts {
		g.hosts = append(g.hosts, strings.ToLower(strings.TrimSuffix(h, ".")))
	}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		g.token = sum[:]
	}
	return g
}

// trusted is set in a request's context once it is known to come from
// loopback or to carry the token.
type trustedKey struct{}

func isTrusted(r *http.Request) bool {
	v, _ := r.Context().Value(trustedKey{}).(bool)
	return v
}

// wrap applies the checks every route shares, in order: the body's size,
// the Host (DNS rebinding), then who the client is (loopback, or the
// bearer token beyond it; the probes answer anyone, with less).
func (g *guard) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is %d bytes, over the %d this API takes", r.ContentLength, MaxBodyBytes))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		if why := g.host(r.Host); why != "" {
			refuse(w, http.StatusMisdirectedRequest, why)
			return
		}
		trusted := loopback(r) || g.bearer(r)
		probe := r.Method == http.MethodGet || r.Method == http.MethodHead
		probe = probe && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz")
		if !trusted && !probe {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshfed"`)
			refuse(w, http.StatusUnauthorized, r.URL.Path+" answers a client beyond loopback only with the bearer token of admin.tokenFile (Authorization: Bearer <token>)")
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), trustedKey{}, trusted)))
	})
}

// host says why a Host header is not one this API answers to, or "". A
// page that rebinds its own name to this address still sends its name.
func (g *guard) host(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.IsLoopback() || ip == g.listen || g.listen.IsUnspecified() {
			return ""
		}
	} else if host == "localhost" || slices.Contains(g.hosts, host) {
		return ""
	}
	return fmt.Sprintf("Host %s is not a name of this agent's admin API: it answers to localhost, the IP addresses of admin.listen and admin.hosts", quote(hostport))
}

// bearer says whether r carries the token.
func (g *guard) bearer(r *http.Request) bool {
	if g.token == nil {
		return false
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], g.token) == 1
}

func loopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// changesState guards a route that changes the agent: from loopback only,
// whatever the token, and only for a request that a browser cannot send
// across sites without the API's consent, which it never gives: one with
// Content-Type application/json (a CORS preflight, answered 405) and no
// Sec-Fetch-Site or Origin of another site. The body is read here, in
// full and within MaxBodyBytes, before the route sees it.
func changesState(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse(w, http.StatusForbidden, r.URL.Path+" refuses a request from another site")
	}))
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopback(r) {
			refuse(w, http.StatusForbidden, r.URL.Path+" answers requests from loopback only")
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			refuse(w, http.StatusUnsupportedMediaType, fmt.Sprintf("%s takes Content-Type application/json, not %s", r.URL.Path, quote(r.Header.Get("Content-Type"))))
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over the %d bytes this API takes", MaxBodyBytes))
				return
			}
			refuse(w, http.StatusBadRequest, "reading the request body: "+err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
}

// refuse answers code with {"error": msg}.
func refuse(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(errorJSON(msg), '\n'))
}

// quote is v quoted, cut to 64 bytes: an answer names what it refuses
// without echoing whatever a client sent.
func quote(v string) string {
	const max = 64
	if len(v) <= max {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%q... (%d bytes)", v[:max], len(v))
}
