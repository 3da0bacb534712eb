package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/session"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/internal/handshake"
)

// TLS builds the mutual TLS configurations of Hamlet connections; the
// authorizer decides which peer identities are accepted.
type TLS interface {
	ServerConfig(authorize tlsconfig.Authorizer) *tls.Config
	ClientConfig(authorize tlsconfig.Authorizer) *tls.Config
}

// Config configures a Manager.
type Config struct {
	Catalog *catalog.Catalog
	TLS     TLS
	Ingress func() wire.Ingress
	// Window is how many responses this agent accepts unacknowledged, and
	// sends when the peer accepts as many; 1 is the specification. At
	// least 1.
	Window int
	// DisableExtensions advertises nothing beyond the specification, for a
	// peer whose implementation trips over the capabilities metadata.
	DisableExtensions bool
	// Grace: see session.Options.Grace; required.
	Grace time.Duration
	// MaxBatch and BatchDelay bound the group commit of what peers
	// publish: see session.Options. MaxBatch is required; a BatchDelay
	// of 0 never waits.
	MaxBatch   int
	BatchDelay time.Duration
	// ServicesPerResponse is how many services one response may carry,
	// either way, when the peer agrees: at most MaxBatch; 1 (or 0) is
	// the specification's one.
	ServicesPerResponse int
	// Retention is how long the imports of a disconnected peer are kept;
	// 0 keeps them until the peer is removed from the configuration.
	Retention time.Duration
	// MinBackoff and MaxBackoff bound the redial delay, after a failed
	// stream or a refusal: 1 s and 2 min by default. Hamlet asks for at
	// least 1 s. SetMaxBackoff changes the cap while the manager runs.
	MinBackoff, MaxBackoff time.Duration
	// KeepaliveEnforcement is how often peers may ping the listener; zero
	// means DefaultKeepaliveEnforcement.
	KeepaliveEnforcement keepalive.EnforcementPolicy
	// HandshakeTimeout bounds how long a connection to the listener may
	// take to finish its TLS and HTTP/2 handshakes, and a stream to bring
	// its opening request; zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxHandshakes and MaxHandshakesPerSource bound the listener's
	// connections still in their TLS handshake, in all and from one
	// source (an IPv4 address or IPv6 /64); over either the oldest is
	// shed. Zero means DefaultMaxHandshakes, DefaultMaxHandshakesPerSource.
	MaxHandshakes, MaxHandshakesPerSource int
	Log                                   *zap.Logger
	Registerer                            prometheus.Registerer
}

// Manager runs the connections of all configured peers.
type Manager struct {
	cfg Config
	log *zap.Logger
	// sampled logs what any client can cause at will.
	sampled *zap.Logger
	smx     *session.Metrics
	// handshakes bounds the listener's connections before they are
	// authenticated.
	handshakes *handshake.Gate

	mu     sync.Mutex
	peers  map[string]*peerRun
	order  []string
	closed bool
	// runCtx is Run's, for the peers SetPeers starts.
	runCtx context.Context
	// grace is Config.Grace, which SetGrace changes for the streams that
	// start after; maxBackoff is Config.MaxBackoff, which SetMaxBackoff
	// changes for the waits that start after.
	grace, maxBackoff atomic.Int64
	wg                sync.WaitGroup
	// unattributed are refused connections of no configured peer's trust
	// domain.
	unattributed      []Refusal
	unattributedTotal int
}

type peerRun struct {
	spec      Spec
	authorize tlsconfig.Authorizer
	status    Status
	activity  session.Activity
	// refusedTotal counts the refused connections of the peer's trust
	// domain, for the metric.
	refusedTotal int
	// stop ends the peer's dialing, once started.
	stop context.CancelFunc
	// cancel ends the peer's current stream, if any, with the status the
	// peer is told (errReplaced, errShuttingDown, errRemoved, errChanged),
	// and done is closed when that stream's session has ended.
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// Why this agent ends a peer's stream, as the peer is told when it
// dialed. A reload's are Unavailable, which a dialer retries: a peer
// removed by mistake and added back finds it again.
var (
	errReplaced = status.Error(codes.Aborted, "replaced by a newer stream from the same peer")
	errRemoved  = status.Error(codes.Unavailable, "peer removed from the configuration of this agent by a reload; its next streams are refused until it is added back")
	errChanged  = status.Error(codes.Unavailable, "peer's settings changed in the configuration of this agent by a reload; reconnect")
)

// errShuttingDown tells a peer that this agent stops: Unavailable, which
// Hamlet peers retry with backoff.
func (m *Manager) errShuttingDown() error {
	return status.Errorf(codes.Unavailable, "meshfed agent%s is shutting down; reconnect with backoff", m.ownIdentity())
}

// NewManager checks the peer specs and prepares their connections; Run
// starts them.
func NewManager(cfg Config, specs []Spec) (*Manager, error) {
	if cfg.TLS == nil {
		return nil, errors.New("peer: no TLS material: Hamlet runs over mutual TLS only")
	}
	// The window and the grace come from the configuration, which gives
	// them their defaults.
	if cfg.Window < 1 {
		return nil, fmt.Errorf("peer: window %d: at least one response must be in flight", cfg.Window)
	}
	if cfg.Grace <= 0 {
		return nil, fmt.Errorf("peer: grace %s is not a duration", cfg.Grace)
	}
	if err := session.CheckLimits(cfg.MaxBatch, cfg.BatchDelay, cfg.ServicesPerResponse); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 2 * time.Minute
	}
	if cfg.KeepaliveEnforcement == (keepalive.EnforcementPolicy{}) {
		cfg.KeepaliveEnforcement = DefaultKeepaliveEnforcement()
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	if cfg.MaxHandshakesPerSource <= 0 {
		cfg.MaxHandshakesPerSource = DefaultMaxHandshakesPerSource
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	m := &Manager{cfg: cfg, log: cfg.Log, sampled: sampledLogger(cfg.Log), handshakes: handshake.NewGate(cfg.MaxHandshakes, cfg.MaxHandshakesPerSource)}
	var catPeers []catalog.Peer
	var err error
	if m.peers, m.order, catPeers, err = prepare(specs); err != nil {
		return nil, err
	}
	if err := cfg.Catalog.SetPeers(catPeers); err != nil {
		return nil, err
	}
	m.grace.Store(int64(cfg.Grace))
	m.maxBackoff.Store(int64(cfg.MaxBackoff))
	cfg.Registerer.MustRegister(&collector{m: m})
	m.smx = session.NewMetrics(cfg.Registerer)
	return m, nil
}

// prepare checks specs and makes a run of each, not started.
func prepare(specs []Spec) (map[string]*peerRun, []string, []catalog.Peer, error) {
	runs := map[string]*peerRun{}
	var order []string
	var catPeers []catalog.Peer
	for _, s := range specs {
		if _, dup := runs[s.Name]; dup {
			return nil, nil, nil, fmt.Errorf("peer %q is configured twice", s.Name)
		}
		a, err := s.authorizer()
		if err != nil {
			return nil, nil, nil, err
		}
		st := Waiting
		if s.Dial != "" {
			st = Connecting
		}
		runs[s.Name] = &peerRun{spec: s, authorize: a, status: Status{Name: s.Name, TrustDomain: s.TrustDomain, Dial: s.Dial, State: st, Since: time.Now()}}
		order = append(order, s.Name)
		catPeers = append(catPeers, s.Peer)
	}
	if err := ambiguous(specs); err != nil {
		return nil, nil, nil, err
	}
	return runs, order, catPeers, nil
}

// SetPeers replaces the configured peers while the manager runs: a peer
// removed or changed has its stream ended and its dialing stopped (a
// removed peer's imports are deleted with it), a new or changed one starts
// as at start, and one that did not change keeps its stream.
func (m *Manager) SetPeers(specs []Spec) error {
	runs, order, catPeers, err := prepare(specs)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("peer: the manager has stopped")
	}
	for name, old := range m.peers {
		next, kept := runs[name]
		if kept && reflect.DeepEqual(old.spec, next.spec) {
			runs[name] = old
			continue
		}
		if old.stop != nil {
			old.stop()
		}
		why, msg := errRemoved, "peer removed by the configuration; its stream ends"
		if kept {
			why, msg = errChanged, "peer changed by the configuration; its stream ends and starts over"
		}
		if old.cancel != nil {
			old.cancel(why)
		}
		m.log.Info(msg, zap.String("peer", name))
	}
	// The catalog drops the imports of removed peers, and accepts those
	// of new ones, once no stream of a removed peer is left to add any.
	if err := m.cfg.Catalog.SetPeers(catPeers); err != nil {
		return err
	}
	old := m.peers
	m.peers, m.order = runs, order
	for _, name := range order {
		if p := runs[name]; old[name] != p {
			m.startLocked(p)
		}
	}
	return nil
}

// SetGrace changes the grace of the streams that start from now on.
func (m *Manager) SetGrace(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("peer: grace %s is not a duration", d)
	}
	m.grace.Store(int64(d))
	return nil
}

// SetMaxBackoff changes the longest wait before a peer is dialed again,
// from the next wait on; at least MinBackoff.
func (m *Manager) SetMaxBackoff(d time.Duration) error {
	if d < m.cfg.MinBackoff {
		return fmt.Errorf("peer: max backoff %s is below the min backoff %s", d, m.cfg.MinBackoff)
	}
	m.maxBackoff.Store(int64(d))
	return nil
}

// MaxBackoff is the longest wait before a peer is dialed again.
func (m *Manager) MaxBackoff() time.Duration { return time.Duration(m.maxBackoff.Load()) }

// startLocked dials p when it has an address and the manager runs.
func (m *Manager) startLocked(p *peerRun) {
	if m.runCtx == nil || p.spec.Dial == "" {
		return
	}
	ctx, stop := context.WithCancel(m.runCtx)
	p.stop = stop
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.dialLoop(ctx, p)
	}()
}

// ambiguous refuses two peers that could present the same identity: an
// accepted stream must map to exactly one peer.
func ambiguous(specs []Spec) error {
	byTD := map[string]string{}
	byID := map[spiffeid.ID]string{}
	for _, s := range specs {
		if s.AnyIDInTrustDomain {
			if other, ok := byTD[s.TrustDomain]; ok {
				return fmt.Errorf("peers %q and %q share trust domain %q: list spiffeIds for each", other, s.Name, s.TrustDomain)
			}
			byTD[s.TrustDomain] = s.Name
			continue
		}
		ids, err := s.agentIDs()
		if err != nil {
			return err
		}
		for _, id := range ids {
			if other, ok := byID[id]; ok {
				return fmt.Errorf("peers %q and %q both accept %s as their agent", other, s.Name, id)
			}
			byID[id] = s.Name
		}
	}
	return nil
}

// Run dials the peers that have an address, expires stale imports, and
// returns when ctx ends and every stream has stopped.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	m.runCtx = ctx
	for _, name := range m.order {
		m.startLocked(m.peers[name])
	}
	m.mu.Unlock()
	if m.cfg.Retention > 0 {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.expireLoop(ctx)
		}()
	}
	<-ctx.Done()
	m.mu.Lock()
	m.closed = true
	for _, p := range m.peers {
		if p.cancel != nil {
			p.cancel(m.errShuttingDown())
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *Manager) expireLoop(ctx context.Context) {
	t := time.NewTicker(min(m.cfg.Retention/4, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, name := range m.order {
				n, err := m.cfg.Catalog.ExpireStale(name, now.Add(-m.cfg.Retention))
				if err != nil {
					m.log.Error("expiring stale imports", zap.String("peer", name), zap.Error(err))
				} else if n > 0 {
					m.log.Info("removed stale imports", zap.String("peer", name), zap.Int("removed", n), zap.Duration("retention", m.cfg.Retention))
				}
			}
		}
	}
}

// Status lists every peer, in configuration order.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	out := make([]Status, 0, len(m.order))
	for _, name := range m.order {
		p := m.peers[name]
		st := p.status
		st.Refused = append([]Refusal(nil), st.Refused...)
		st.LastSent = timeOrNil(p.activity.LastSent())
		st.LastReceived = timeOrNil(p.activity.LastReceived())
		if c, ok := p.activity.Negotiated(); ok {
			st.Capabilities = &c
		}
		out = append(out, st)
	}
	m.mu.Unlock()
	for i := range out {
		out[i].Imported = m.cfg.Catalog.ImportCount(out[i].Name)
		out[i].Exported = len(m.cfg.Catalog.ExportedTo(out[i].Name))
	}
	return out
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (m *Manager) setState(p *peerRun, st State, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.status.State != st {
		p.status.Since = time.Now()
	}
	p.status.State = st
	setErrorLocked(p, err)
}

// setErrorLocked records why the peer's stream failed; a nil err leaves
// the last one.
func setErrorLocked(p *peerRun, err error) {
	if err == nil {
		return
	}
	now := time.Now()
	p.status.LastError, p.status.LastErrorAt = err.Error(), &now
}

// begin makes s the peer's one stream: a second concurrent stream from the
// same peer replaces the first, whose session is ended (and its imports
// marked stale) before the new one starts. A peer that reconnects after a
// network fault is usually right that its old stream is dead; the old one
// may not know yet.
func (m *Manager) begin(ctx context.Context, p *peerRun, identity spiffeid.ID) (context.Context, func(error), error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, nil, m.errShuttingDown()
	}
	oldCancel, oldDone := p.cancel, p.done
	sctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	p.cancel, p.done = cancel, done
	m.mu.Unlock()
	if oldCancel != nil {
		m.log.Info("peer opened a new stream, replacing its old one", zap.String("peer", p.spec.Name))
		oldCancel(errReplaced)
		<-oldDone
	}
	m.mu.Lock()
	if p.status.State != Connected {
		p.status.Since = time.Now()
	}
	p.status.State = Connected
	p.status.Identity = identity.String()
	p.status.NextRetry = nil
	// Recovered: what made the last stream fail is over.
	p.status.LastError, p.status.LastErrorAt = "", nil
	p.status.Refusal = nil
	m.mu.Unlock()
	m.log.Info("peer connected", zap.String("peer", p.spec.Name), zap.Stringer("identity", identity))
	end := func(err error) {
		cancel(nil)
		m.mu.Lock()
		if p.done == done {
			p.cancel, p.done = nil, nil
			p.status.Identity = ""
			p.status.State, p.status.Since = Waiting, time.Now()
			if p.spec.Dial != "" {
				p.status.State = Backoff
			}
			setErrorLocked(p, err)
		}
		m.mu.Unlock()
		if serr := m.cfg.Catalog.MarkStale(p.spec.Name, time.Now()); serr != nil {
			m.log.Error("marking imports stale", zap.String("peer", p.spec.Name), zap.Error(serr))
		}
		close(done)
		m.log.Info("peer stream ended; its imports are kept, marked stale", zap.String("peer", p.spec.Name), zap.Error(err))
	}
	return sctx, end, nil
}

func (m *Manager) sessionOptions(p *peerRun, ctxToken string, local session.Capabilities, remote func() (session.Capabilities, error), exchanged func()) session.Options {
	return session.Options{
		Peer:       p.spec.Name,
		Catalog:    m.cfg.Catalog,
		Ingress:    m.cfg.Ingress,
		Context:    ctxToken,
		Local:      local,
		Remote:     remote,
		Grace:      time.Duration(m.grace.Load()),
		MaxBatch:   m.cfg.MaxBatch,
		BatchDelay: m.cfg.BatchDelay,
		Exchanged:  exchanged,
		Activity:   &p.activity,
		Log:        m.log,
		Metrics:    m.smx,
	}
}

func (m *Manager) capabilities() session.Capabilities {
	if m.cfg.DisableExtensions {
		return session.Capabilities{}
	}
	return session.Capabilities{SyncComplete: true, Window: m.cfg.Window, ServicesPerResponse: m.cfg.ServicesPerResponse}
}
