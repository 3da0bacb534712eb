package certs

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/model"
)

// SVIDSource is one role's X.509 SVID, kept current as it rotates. It is an
// x509svid.Source, so go-spiffe's tlsconfig callbacks read it on every
// handshake: new handshakes use a rotated SVID, open connections are
// untouched.
type SVIDSource interface {
	x509svid.Source
	// Role is the role this SVID identifies.
	Role() model.Role
	// Subscribe announces each change of the SVID; see notifier.
	Subscribe() (<-chan struct{}, func())
	// Material returns the current SVID as PEM for SDS.
	Material() (SVIDMaterial, error)
	// State is the SVID in use and the last refusal, for the status.
	State() SVIDState
	// Close stops watching for changes.
	Close() error
}

// svidState holds the last good SVID of one role and announces changes.
// An SVID that is worse than none in use (expired, not yet valid, of
// another trust domain or role, for another workload) is never taken into
// use: the last good one stays, and the refusal is kept for the status
// until a good one loads.
type svidState struct {
	role    model.Role
	want    spiffeid.ID          // zero when any ID is accepted
	td      spiffeid.TrustDomain // zero when any trust domain is
	source  string
	log     *zap.Logger
	metrics *Metrics
	cur     atomic.Pointer[x509svid.SVID]
	notifier

	mu sync.Mutex
	// refused is why the last SVID offered was not taken; empty once a
	// good one loads.
	refused   string
	refusedAt time.Time
}

func newSVIDState(role model.Role, want spiffeid.ID, td spiffeid.TrustDomain, source string, log *zap.Logger, m *Metrics) (*svidState, error) {
	if err := role.Validate(); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &svidState{role: role, want: want, td: td, source: source, log: log.With(zap.String("role", string(role))), metrics: m}, nil
}

func (s *svidState) Role() model.Role { return s.role }

func (s *svidState) GetX509SVID() (*x509svid.SVID, error) {
	if v := s.cur.Load(); v != nil {
		return v, nil
	}
	return nil, fmt.Errorf("certs: no X509-SVID loaded for role %s", s.role)
}

func (s *svidState) Material() (SVIDMaterial, error) {
	v, err := s.GetX509SVID()
	if err != nil {
		return SVIDMaterial{}, err
	}
	return svidMaterial(v)
}

// check refuses an SVID that would be worse than the one in use: for
// another workload, role or trust domain, or not valid at now.
func (s *svidState) check(v *x509svid.SVID, now time.Time) error {
	if !s.want.IsZero() && v.ID != s.want {
		return fmt.Errorf("certs: SVID for role %s has SPIFFE ID %q, want %q", s.role, v.ID, s.want)
	}
	if err := checkRole(s.role, s.td, v); err != nil {
		return err
	}
	return checkValidity(fmt.Sprintf("the SVID %s for role %s", v.ID, s.role), v.Certificates, now)
}

// set takes v into use and reports whether it differs from the current one.
func (s *svidState) set(v *x509svid.SVID) bool {
	s.mu.Lock()
	if s.refused != "" {
		s.log.Info("a good SVID is in use again; the refused one is forgotten", zap.String("refused", s.refused))
	}
	s.refused, s.refusedAt = "", time.Time{}
	s.mu.Unlock()
	prev := s.cur.Load()
	if prev != nil && sameChain(prev, v) {
		return false
	}
	s.cur.Store(v)
	leaf := v.Certificates[0]
	fields := []zap.Field{
		zap.Stringer("spiffe_id", v.ID),
		zap.String("serial", leaf.SerialNumber.String()),
		zap.Time("not_after", leaf.NotAfter),
	}
	if prev != nil {
		s.metrics.rotated(KindSVID, string(s.role))
		s.log.Info("SVID rotated", fields...)
	} else {
		s.log.Info("SVID loaded", fields...)
	}
	s.notify()
	return true
}

// failed refuses what was offered: logged, counted, and kept for the
// status until a good SVID loads.
func (s *svidState) failed(err error) {
	s.mu.Lock()
	s.refused, s.refusedAt = err.Error(), time.Now()
	s.mu.Unlock()
	s.metrics.loadFailed(KindSVID, string(s.role))
	s.log.Error("SVID refused; keeping the last good SVID", zap.String("source", s.source), zap.Error(err))
}

// SVIDState is a role's SVID in use and, when the last one offered was
// refused, why.
type SVIDState struct {
	Role string `json:"role"`
	// Source is where the SVID comes from: "files CERT and KEY", or the
	// Workload API.
	Source   string    `json:"source"`
	ID       string    `json:"spiffeId,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	// Refused is why the last SVID offered was not taken into use (the
	// one above stays); empty once a good one loads.
	Refused   string    `json:"refused,omitempty"`
	RefusedAt time.Time `json:"refusedAt,omitzero"`
}

// State is the SVID in use and the last refusal.
func (s *svidState) State() SVIDState {
	st := SVIDState{Role: string(s.role), Source: s.source}
	if v := s.cur.Load(); v != nil {
		leaf := v.Certificates[0]
		st.ID, st.Serial, st.NotAfter = v.ID.String(), fmt.Sprintf("%x", leaf.SerialNumber), leaf.NotAfter
	}
	s.mu.Lock()
	st.Refused, st.RefusedAt = s.refused, s.refusedAt
	s.mu.Unlock()
	return st
}

// sameChain compares certificates only: the private key is bound to the
// leaf's public key, so an equal chain means an equal SVID.
func sameChain(a, b *x509svid.SVID) bool {
	if len(a.Certificates) != len(b.Certificates) {
		return false
	}
	for i := range a.Certificates {
		if !bytes.Equal(a.Certificates[i].Raw, b.Certificates[i].Raw) {
			return false
		}
	}
	return true
}

// FileSVIDConfig names the PEM files of one role's SVID.
type FileSVIDConfig struct {
	Role     model.Role
	CertFile string // leaf first, then intermediates
	KeyFile  string // PKCS#8, or SEC 1 / PKCS#1
	// ID, when set, is the SPIFFE ID the certificate must carry; a file with
	// another ID is rejected like a malformed one.
	ID spiffeid.ID
	// TrustDomain, when set, is the trust domain the SVID must be of, as
	// an SVID of Role (checkRole).
	TrustDomain spiffeid.TrustDomain
	// Settle is how long the files may stay unusable after a change before
	// that is an error (a rotation writing them one after the other); zero
	// makes it one at once.
	Settle time.Duration
}

// FileSVIDSource is an SVIDSource backed by PEM files, reloaded when they
// change on disk.
type FileSVIDSource struct {
	*svidState
	cfg       FileSVIDConfig
	watcher   *fileWatcher
	settling  settler
	closeOnce sync.Once
	closeErr  error
}

// NewFileSVIDSource loads the SVID once, failing if it cannot or if it
// would be refused later, and then watches the files. A later change that
// cannot be used (half written, mismatched key, wrong ID, role or trust
// domain, not valid now) leaves the last good SVID in use; once it has
// lasted cfg.Settle it is logged, counted and kept for State.
func NewFileSVIDSource(cfg FileSVIDConfig, log *zap.Logger, m *Metrics) (*FileSVIDSource, error) {
	st, err := newSVIDState(cfg.Role, cfg.ID, cfg.TrustDomain, fmt.Sprintf("files %s and %s", cfg.CertFile, cfg.KeyFile), log, m)
	if err != nil {
		return nil, err
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, fmt.Errorf("certs: SVID for role %s needs both a certificate file and a key file", cfg.Role)
	}
	s := &FileSVIDSource{svidState: st, cfg: cfg, settling: settler{settle: cfg.Settle}}
	if err := s.load(time.Now()); err != nil {
		return nil, err
	}
	s.watcher, err = watchFiles([]string{cfg.CertFile, cfg.KeyFile}, s.log, s.reload)
	if err != nil {
		return nil, fmt.Errorf("certs: watch SVID files for role %s: %w", cfg.Role, err)
	}
	return s, nil
}

func (s *FileSVIDSource) load(now time.Time) error {
	v, err := loadSVID(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("certs: load SVID for role %s from %s: %w", s.role, s.cfg.CertFile, err)
	}
	if err := s.check(v, now); err != nil {
		return fmt.Errorf("%w (in %s)", err, s.cfg.CertFile)
	}
	s.set(v)
	return nil
}

// reload reads the files after a change, and returns when to read them
// again without one: while they settle, or when a certificate not yet
// valid becomes so.
func (s *FileSVIDSource) reload(event bool) time.Duration {
	if event {
		s.settling.changed()
	}
	now := time.Now()
	err := s.load(now)
	if err == nil {
		s.settling.ok()
		return 0
	}
	if wait := s.settling.fail(now); wait > 0 {
		s.log.Debug("SVID files not usable yet; waiting for the rest of the rotation", zap.Duration("settle", s.cfg.Settle), zap.Error(err))
		return wait
	}
	if s.settling.report(err) {
		s.failed(err)
	}
	var later *notYetValid
	if errors.As(err, &later) && later.from.Sub(now) < resyncInterval {
		return later.from.Sub(now) + reloadHoldoff
	}
	return 0
}

// Close stops watching the files; the last SVID stays readable.
func (s *FileSVIDSource) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.watcher.Close() })
	return s.closeErr
}
