package certs

import (
	"bytes"
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
	// Close stops watching for changes.
	Close() error
}

// svidState holds the last good SVID of one role and announces changes.
type svidState struct {
	role    model.Role
	want    spiffeid.ID // zero when any ID is accepted
	log     *zap.Logger
	metrics *Metrics
	cur     atomic.Pointer[x509svid.SVID]
	notifier
}

func newSVIDState(role model.Role, want spiffeid.ID, log *zap.Logger, m *Metrics) (*svidState, error) {
	if err := role.Validate(); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &svidState{role: role, want: want, log: log.With(zap.String("role", string(role))), metrics: m}, nil
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

// check rejects an SVID for another workload before it replaces a good one.
func (s *svidState) check(v *x509svid.SVID) error {
	if !s.want.IsZero() && v.ID != s.want {
		return fmt.Errorf("certs: SVID for role %s has SPIFFE ID %q, want %q", s.role, v.ID, s.want)
	}
	return nil
}

// set takes v into use and reports whether it differs from the current one.
func (s *svidState) set(v *x509svid.SVID) bool {
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
	if time.Now().After(leaf.NotAfter) {
		s.log.Warn("loaded an expired SVID; peers will reject it until it is replaced", fields...)
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

func (s *svidState) failed(err error) {
	s.metrics.loadFailed(KindSVID, string(s.role))
	s.log.Error("SVID load failed; keeping the last good SVID", zap.Error(err))
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
}

// FileSVIDSource is an SVIDSource backed by PEM files, reloaded when they
// change on disk.
type FileSVIDSource struct {
	*svidState
	cfg       FileSVIDConfig
	watcher   *fileWatcher
	closeOnce sync.Once
	closeErr  error
}

// NewFileSVIDSource loads the SVID once, failing if it cannot, and then
// watches the files. A later bad file (half written, mismatched key, wrong
// ID) is logged and counted, and the last good SVID stays in use.
func NewFileSVIDSource(cfg FileSVIDConfig, log *zap.Logger, m *Metrics) (*FileSVIDSource, error) {
	st, err := newSVIDState(cfg.Role, cfg.ID, log, m)
	if err != nil {
		return nil, err
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, fmt.Errorf("certs: SVID for role %s needs both a certificate file and a key file", cfg.Role)
	}
	s := &FileSVIDSource{svidState: st, cfg: cfg}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.watcher, err = watchFiles([]string{cfg.CertFile, cfg.KeyFile}, s.log, s.reload)
	if err != nil {
		return nil, fmt.Errorf("certs: watch SVID files for role %s: %w", cfg.Role, err)
	}
	return s, nil
}

func (s *FileSVIDSource) load() error {
	v, err := loadSVID(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("certs: load SVID for role %s from %s: %w", s.role, s.cfg.CertFile, err)
	}
	if err := s.check(v); err != nil {
		return err
	}
	s.set(v)
	return nil
}

func (s *FileSVIDSource) reload() {
	if err := s.load(); err != nil {
		s.failed(err)
	}
}

// Close stops watching the files; the last SVID stays readable.
func (s *FileSVIDSource) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.watcher.Close() })
	return s.closeErr
}
