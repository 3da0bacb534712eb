package certs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"go.uber.org/zap"

	"github.com/meshfed/meshfed/model"
)

// WorkloadSVIDConfig selects one role's SVID from a SPIFFE Workload API.
type WorkloadSVIDConfig struct {
	Role model.Role
	// Addr is the Workload API address, e.g. "unix:///run/spire/agent.sock".
	// Empty means the SPIFFE_ENDPOINT_SOCKET environment variable.
	Addr string
	// ID picks the SVID with this SPIFFE ID when the Workload API gives the
	// agent several (one per role); zero takes the default (first) SVID.
	ID spiffeid.ID
	// TrustDomain, when set, is the trust domain the SVID must be of, as
	// an SVID of Role.
	TrustDomain spiffeid.TrustDomain
}

// WorkloadSVIDSource is an SVIDSource backed by a go-spiffe
// workloadapi.X509Source, which streams rotations from the Workload API.
type WorkloadSVIDSource struct {
	*svidState
	src       *workloadapi.X509Source
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewWorkloadSVIDSource connects to the Workload API and blocks until the
// first SVID arrives or ctx ends.
func NewWorkloadSVIDSource(ctx context.Context, cfg WorkloadSVIDConfig, log *zap.Logger, m *Metrics) (*WorkloadSVIDSource, error) {
	st, err := newSVIDState(cfg.Role, cfg.ID, cfg.TrustDomain, "the Workload API", log, m)
	if err != nil {
		return nil, err
	}
	clientOpts := []workloadapi.ClientOption{workloadapi.WithLogger(spiffeLogger{st.log})}
	if cfg.Addr != "" {
		clientOpts = append(clientOpts, workloadapi.WithAddr(cfg.Addr))
	}
	opts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(clientOpts...)}
	if !cfg.ID.IsZero() {
		opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(pickID(cfg.ID)))
	}
	src, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("certs: Workload API for role %s: %w", cfg.Role, err)
	}
	s := &WorkloadSVIDSource{svidState: st, src: src}
	if err := s.refresh(); err != nil {
		_ = src.Close()
		return nil, err
	}
	// The watch outlives the constructor's ctx, which only bounds the wait
	// for the first SVID; Close ends it.
	watchCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(1)
	go s.watch(watchCtx)
	return s, nil
}

func pickID(id spiffeid.ID) func([]*x509svid.SVID) *x509svid.SVID {
	return func(svids []*x509svid.SVID) *x509svid.SVID {
		for _, v := range svids {
			if v.ID == id {
				return v
			}
		}
		return nil
	}
}

func (s *WorkloadSVIDSource) refresh() error {
	v, err := s.src.GetX509SVID()
	if err != nil {
		return fmt.Errorf("certs: Workload API for role %s: %w", s.role, err)
	}
	if err := s.check(v, time.Now()); err != nil {
		return err
	}
	s.set(v)
	return nil
}

func (s *WorkloadSVIDSource) watch(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.src.Updated():
			if err := s.refresh(); err != nil {
				s.failed(err)
			}
		}
	}
}

// Close disconnects from the Workload API. The last SVID stays readable.
func (s *WorkloadSVIDSource) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.closeErr = s.src.Close()
	})
	return s.closeErr
}

// spiffeLogger adapts zap to go-spiffe's logger interface.
type spiffeLogger struct{ log *zap.Logger }

func (l spiffeLogger) Debugf(format string, args ...any) { l.log.Sugar().Debugf(format, args...) }
func (l spiffeLogger) Infof(format string, args ...any)  { l.log.Sugar().Infof(format, args...) }
func (l spiffeLogger) Warnf(format string, args ...any)  { l.log.Sugar().Warnf(format, args...) }
func (l spiffeLogger) Errorf(format string, args ...any) { l.log.Sugar().Errorf(format, args...) }
