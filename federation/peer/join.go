package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"
	"golang.org/x/time/rate"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/internal/handshake"
	"github.com/meshfed/meshfed/internal/untrusted"
)

// The join endpoint (federation.join.listen) is HTTPS with the agent's
// SVID. A mesh that holds an invitation token dials it, verifies the
// server against the token's bundle and agent IDs, presents its own
// agent's SVID, and posts the token with a description of itself
// (JoinRequest): its bundle, which its certificate must chain to, its
// agent and egress IDs and addresses. The inviter checks the token (its
// own signature, the secret, expiry, first use), adds the peer, and
// answers with its own description (JoinAnswer). Nobody is trusted before
// the token's secret: the client's certificate is only checked against
// the bundle the client itself sends, which proves it holds that agent's
// key.

// JoinPath is the join endpoint's one route.
const JoinPath = "/meshfed/join/v1"

// JoinRequest is what a joining mesh posts.
type JoinRequest struct {
	// Token is the invitation token, whole.
	Token string `json:"token"`
	// Mesh is the joining mesh.
	Mesh MeshInfo `json:"mesh"`
}

// JoinAnswer is the inviter's answer to a join it accepted.
type JoinAnswer struct {
	// Name is what the inviter calls the joining mesh.
	Name string `json:"name"`
	// Mesh is the inviter.
	Mesh MeshInfo `json:"mesh"`
}

// joinRefusal is the body of a refused join.
type joinRefusal struct {
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// JoinAcceptor decides a join whose token and description passed the
// endpoint's checks: the agent, which keeps the invitations. Its error is
// a *TokenError when it refuses (the reason says why), anything else when
// it fails.
type JoinAcceptor func(ctx context.Context, inv Invitation, joiner MeshInfo, agentID spiffeid.ID, remote netip.AddrPort) (JoinAnswer, error)

// The join endpoint's bounds: joins are rare (one a peer, by hand), so
// these are far above what operators do and far below what a flood
// needs.
const (
	// joinRate and joinBurst bound joins from everyone.
	joinRate  = 5
	joinBurst = 10
	// sourceInterval and sourceBurst bound joins from one IPv4 address or
	// IPv6 /64: a token mistyped a few times, not a search.
	sourceInterval = 2 * time.Second
	sourceBurst    = 5
	// maxSources bounds the sources remembered; past it, new sources are
	// refused until old ones have been idle for sourceIdle.
	maxSources = 4096
	sourceIdle = time.Minute
	// maxJoinConns bounds the connections open at once.
	maxJoinConns = 64
	// maxJoinBody holds a token and a description of two bundles.
	maxJoinBody = 4 * MaxTokenBytes
	// maxAnswerBody bounds what a client reads of an answer.
	maxAnswerBody = 1 << 20
)

// JoinServerConfig configures a JoinServer.
type JoinServerConfig struct {
	// SVID is the agent's, the server certificate.
	SVID x509svid.Source
	// Own is this trust domain's bundle: a token must be signed by one of
	// its agents.
	Own    x509bundle.Source
	Accept JoinAcceptor
	Log    *zap.Logger
	// Registerer, when set, counts joins by result.
	Registerer prometheus.Registerer
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// JoinServer serves the join endpoint.
type JoinServer struct {
	cfg     JoinServerConfig
	all     *rate.Limiter
	mu      sync.Mutex
	sources map[netip.Prefix]*sourceLimit
	joins   *prometheus.CounterVec
	sampled *zap.Logger
}

type sourceLimit struct {
	l    *rate.Limiter
	last time.Time
}

// NewJoinServer returns the join endpoint's server; Serve serves it.
func NewJoinServer(cfg JoinServerConfig) (*JoinServer, error) {
	if cfg.SVID == nil || cfg.Own == nil || cfg.Accept == nil {
		return nil, errors.New("join endpoint: SVID, Own and Accept are required")
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &JoinServer{cfg: cfg, all: rate.NewLimiter(joinRate, joinBurst), sources: map[netip.Prefix]*sourceLimit{},
		sampled: sampledLogger(cfg.Log)}
	s.joins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshfed_join_requests_total",
		Help: "Requests to the join endpoint, by result: accepted, or the reason they were refused (MALFORMED, ALTERED, EXPIRED, USED, UNKNOWN, SECRET, CONFLICT, INVALID, RATE_LIMITED, UNAVAILABLE).",
	}, []string{"result"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.joins); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Serve serves joins on ln until ctx ends; it closes ln.
func (s *JoinServer) Serve(ctx context.Context, ln net.Listener) error {
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: tlsconfig.GetCertificate(s.cfg.SVID),
		// The client's certificate is checked in the handler, against
		// the bundle it sends: no trust domain here knows it yet.
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tc,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(s.cfg.Log.Named("join")),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(netutil.LimitListener(ln, maxJoinConns), tc)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("federation.join.listen: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("federation.join.listen: %w", err)
	}
	return nil
}

// Handler serves JoinPath; TLS is the caller's.
func (s *JoinServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+JoinPath, s.join)
	return mux
}

func (s *JoinServer) join(w http.ResponseWriter, r *http.Request) {
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	remoteAddr := net.TCPAddrFromAddrPort(remote)
	refuse := func(code int, e *TokenError, fields ...zap.Field) {
		s.joins.WithLabelValues(e.Reason).Inc()
		s.sampled.Warn("join refused", append(fields, zap.String("remote", r.RemoteAddr), zap.String("reason", e.Reason), zap.String("why", e.Msg))...)
		if e.Reason == ReasonRateLimited {
			w.Header().Set("Retry-After", strconv.Itoa(int(sourceInterval/time.Second)))
		}
		writeJoinJSON(w, code, joinRefusal{Reason: e.Reason, Error: e.Msg})
	}
	if !s.allow(remoteAddr) {
		refuse(http.StatusTooManyRequests, tokenErr(ReasonRateLimited, "too many joins; try again in a few seconds"))
		return
	}
	var req JoinRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJoinBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		refuse(http.StatusBadRequest, tokenErr(ReasonInvalid, "the request is not a join: %s", untrusted.Message(err.Error())))
		return
	}
	inv, err := VerifyIssuer(req.Token, s.cfg.Own)
	var te *TokenError
	if errors.As(err, &te) {
		refuse(http.StatusUnauthorized, te)
		return
	} else if err != nil {
		refuse(http.StatusUnauthorized, tokenErr(ReasonMalformed, "%v", err))
		return
	}
	joiner := req.Mesh
	if err := joiner.Check(); err != nil {
		refuse(http.StatusBadRequest, tokenErr(ReasonInvalid, "%v", err), zap.String("invitation", inv.ID))
		return
	}
	agentID, err := s.proves(r, joiner)
	if err != nil {
		refuse(http.StatusUnauthorized, tokenErr(ReasonInvalid, "%v", err), zap.String("invitation", inv.ID))
		return
	}
	ans, err := s.cfg.Accept(r.Context(), inv, joiner, agentID, remote)
	switch {
	case errors.As(err, &te):
		refuse(refusalCode(te.Reason), te, zap.String("invitation", inv.ID), zap.String("trust_domain", joiner.TrustDomain))
		return
	case err != nil:
		refuse(http.StatusServiceUnavailable, tokenErr(ReasonUnavailable, "the inviting agent could not add the peer: %v", err), zap.String("invitation", inv.ID))
		return
	}
	s.joins.WithLabelValues("accepted").Inc()
	s.cfg.Log.Info("join accepted", zap.String("peer", ans.Name), zap.String("trust_domain", joiner.TrustDomain),
		zap.Stringer("agent", agentID), zap.String("remote", r.RemoteAddr), zap.String("invitation", inv.ID))
	writeJoinJSON(w, http.StatusOK, ans)
}

// proves checks that the client holds the key of an agent of the mesh it
// describes: its certificate chains to the bundle it sent, with one of
// the agent IDs it gave.
func (s *JoinServer) proves(r *http.Request, m MeshInfo) (spiffeid.ID, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("no client certificate: a joining agent presents its SVID")
	}
	td, _ := spiffeid.TrustDomainFromString(m.TrustDomain)
	bundle, err := ParseBundle(td, m.Bundle)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("mesh.bundle: %v", err)
	}
	id, _, err := x509svid.Verify(r.TLS.PeerCertificates, bundle)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("the client certificate does not chain to mesh.bundle: %v", err)
	}
	if !slices.Contains(m.AgentIDs, id.String()) {
		return spiffeid.ID{}, fmt.Errorf("the client certificate is %s, none of mesh.agentIds", id)
	}
	return id, nil
}

// refusalCode is the HTTP status of a refusal's reason.
func refusalCode(reason string) int {
	switch reason {
	case ReasonExpired, ReasonUsed:
		return http.StatusGone
	case ReasonUnknown:
		return http.StatusNotFound
	case ReasonSecret, ReasonAltered, ReasonMalformed:
		return http.StatusUnauthorized
	case ReasonConflict:
		return http.StatusConflict
	case ReasonInvalid:
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}

// allow takes a token of the endpoint's limit and of the source's.
func (s *JoinServer) allow(addr net.Addr) bool {
	if !s.all.Allow() {
		return false
	}
	src := handshake.SourceOf(addr)
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.sources[src]
	if !ok {
		if len(s.sources) >= maxSources {
			for p, sl := range s.sources {
				if now.Sub(sl.last) > sourceIdle {
					delete(s.sources, p)
				}
			}
			if len(s.sources) >= maxSources {
				return false
			}
		}
		l = &sourceLimit{l: rate.NewLimiter(rate.Every(sourceInterval), sourceBurst)}
		s.sources[src] = l
	}
	l.last = now
	return l.l.AllowN(now, 1)
}

func writeJoinJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// JoinClient joins a mesh that sent an invitation.
type JoinClient struct {
	// SVID is this agent's: the client certificate.
	SVID x509svid.Source
	// Timeout bounds the join; zero is 30 seconds.
	Timeout time.Duration
}

// Join posts the token and this mesh's description to the invitation's
// join endpoint, over TLS verified against the token's bundle and agent
// IDs, and returns the inviter's answer, checked. A refusal is a
// *TokenError with the inviter's reason.
func (c JoinClient) Join(ctx context.Context, token string, inv Invitation, self MeshInfo) (JoinAnswer, error) {
	td := spiffeid.RequireTrustDomainFromString(inv.Mesh.TrustDomain)
	bundle, err := ParseBundle(td, inv.Mesh.Bundle)
	if err != nil {
		return JoinAnswer{}, err
	}
	var ids []spiffeid.ID
	for _, s := range inv.Mesh.AgentIDs {
		ids = append(ids, spiffeid.RequireFromString(s))
	}
	tc := certs.ClientTLSConfig(c.SVID, bundle, tlsconfig.AuthorizeOneOf(ids...))
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	hc := &http.Client{
		Timeout: timeout,
		// No proxy from the environment, no redirect: the token names
		// the one address to reach, and nothing else is trusted.
		Transport:     &http.Transport{TLSClientConfig: tc, Proxy: nil, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer hc.CloseIdleConnections()
	body, err := json.Marshal(JoinRequest{Token: token, Mesh: self})
	if err != nil {
		return JoinAnswer{}, err
	}
	url := "https://" + inv.Join + JoinPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return JoinAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return JoinAnswer{}, fmt.Errorf("the join endpoint of %s at %s cannot be reached: %w", inv.Mesh.TrustDomain, inv.Join, untrusted.Error(errors.Unwrap(err)))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody+1))
	if err != nil {
		return JoinAnswer{}, fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	if len(b) > maxAnswerBody {
		return JoinAnswer{}, fmt.Errorf("the answer of %s is over %d bytes", url, maxAnswerBody)
	}
	if resp.StatusCode != http.StatusOK {
		var ref joinRefusal
		if json.Unmarshal(b, &ref) == nil && ref.Reason != "" {
			return JoinAnswer{}, &TokenError{Reason: ref.Reason, Msg: fmt.Sprintf("%s refused the join: %s", inv.Mesh.TrustDomain, untrusted.Message(ref.Error))}
		}
		return JoinAnswer{}, fmt.Errorf("%s answered the join with %s", url, resp.Status)
	}
	var ans JoinAnswer
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ans); err != nil {
		return JoinAnswer{}, fmt.Errorf("the answer of %s is not a join's: %s", url, untrusted.Message(err.Error()))
	}
	if err := ans.Mesh.Check(); err != nil {
		return JoinAnswer{}, fmt.Errorf("the answer of %s: %v", url, err)
	}
	if ans.Mesh.TrustDomain != inv.Mesh.TrustDomain || ans.Name != inv.Name {
		return JoinAnswer{}, fmt.Errorf("the answer of %s is for trust domain %s and name %s, not the invitation's %s and %s", url,
			untrusted.Quote(ans.Mesh.TrustDomain), untrusted.Quote(ans.Name), inv.Mesh.TrustDomain, inv.Name)
	}
	return ans, nil
}
