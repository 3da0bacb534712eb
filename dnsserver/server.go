package dnsserver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// shutdownGrace bounds how long Serve waits for queries in flight, a
// forwarded one included, once its context is done.
const shutdownGrace = 5 * time.Second

// Server answers for the names of its table.
type Server struct {
	cfg     Config
	listen  netip.AddrPort
	ttl     uint32
	table   *table
	queries *prometheus.CounterVec

	mu  sync.Mutex
	tcp net.Listener
	udp net.PacketConn
}

// New checks cfg and registers the metrics; nothing listens yet, and the
// table is empty until Set.
func New(cfg Config) (*Server, error) {
	ap, err := cfg.check()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		listen: ap,
		ttl:    uint32(cfg.TTL / time.Second),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshfed", Subsystem: "dns", Name: "queries_total",
			Help: "DNS queries answered, by response code (forwarded ones with the upstream's).",
		}, []string{"rcode"}),
	}
	if err := cfg.Registerer.Register(s.queries); err != nil {
		return nil, fmt.Errorf("dnsserver: registering metrics: %w", err)
	}
	s.table = newTable()
	return s, nil
}

// Set replaces the whole table; a query sees the old table or the new one,
// never a mix.
func (s *Server) Set(records []Record) {
	t := newTable()
	t.update(records, nil, s.ttl, s.cfg.Log)
	s.table.mu.Lock()
	s.table.nodes, s.table.owned = t.nodes, t.owned
	s.table.mu.Unlock()
}

// Update sets the records of set, replacing those of the same names, and
// removes the records called remove; the rest of the table stays as it
// is. A query sees the table before the update or after it, never a mix.
func (s *Server) Update(set []Record, remove []string) {
	s.table.update(set, remove, s.ttl, s.cfg.Log)
}

// Listen binds UDP and TCP on the configured address. Serve calls it when
// it has not been called; calling it first lets a caller learn the port of
// 127.0.0.1:0 from Addr before serving.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp != nil {
		return nil
	}
	tcp, udp, err := listenBoth(s.listen)
	if err != nil {
		return fmt.Errorf("dns.listen: %w", err)
	}
	s.tcp, s.udp = tcp, udp
	return nil
}

// Addr is the TCP address, whose port UDP shares; nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// listenBoth binds TCP and then UDP on the same port. With port 0 the port
// the kernel picked for TCP may be taken for UDP, so it picks again, a
// bounded number of times.
func listenBoth(ap netip.AddrPort) (net.Listener, net.PacketConn, error) {
	for try := 1; ; try++ {
		tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			return nil, nil, err
		}
		port := uint16(tcp.Addr().(*net.TCPAddr).Port)
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr(), port)))
		if err == nil {
			return tcp, udp, nil
		}
		_ = tcp.Close()
		if ap.Port() != 0 || try == 10 {
			return nil, nil, err
		}
	}
}

// Serve answers on UDP and TCP until ctx is done, then waits a little for
// queries in flight. A listen error returns at once. Call it once.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	servers := []*dns.Server{
		{PacketConn: s.udp, Handler: handler{s: s, net: "udp"}},
		{Listener: s.tcp, Handler: handler{s: s, net: "tcp"}},
	}
	s.mu.Unlock()
	started := make(chan struct{}, len(servers))
	errc := make(chan error, len(servers))
	for _, ds := range servers {
		ds.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { errc <- ds.ActivateAndServe() }()
	}
	// Shutting down a dns.Server that has not started yet fails and leaves
	// it serving, so wait until both have.
	for range servers {
		select {
		case <-started:
		case err := <-errc:
			s.closeSockets()
			return fmt.Errorf("dns: serving on %s: %w", s.listen, err)
		}
	}
	s.cfg.Log.Info("answering DNS for imported services", zap.Stringer("address", s.Addr()), zap.Strings("forward", s.cfg.Forward))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("dns: serving on %s: %w", s.listen, err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	for _, ds := range servers {
		// Only the grace running out fails here, and then the sockets are
		// closed below all the same.
		if serr := ds.ShutdownContext(shutdownCtx); serr != nil {
			s.cfg.Log.Warn("DNS queries still in flight at shutdown", zap.Error(serr))
		}
	}
	s.closeSockets()
	return err
}

func (s *Server) closeSockets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.tcp.Close()
	_ = s.udp.Close()
}
