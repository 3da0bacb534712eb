package xds

import (
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"

	"github.com/meshfed/meshfed/internal/handshake"
)

// gatedCreds is the mutual TLS of a TCP listener, bounded before the
// client is authenticated: anybody who reaches the port can open a
// connection, and a gateway's SVID is what the handshake checks. Every
// connection counts toward the gate until its handshake ends; gRPC has set
// its deadline (Config.HandshakeTimeout) before.
type gatedCreds struct {
	credentials.TransportCredentials
	gate *handshake.Gate
	cut  func(remote net.Addr, reason string)
}

func (c gatedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, cut, err := c.gate.Handshake(raw, c.TransportCredentials.ServerHandshake)
	if cut != "" {
		c.cut(raw.RemoteAddr(), cut)
	}
	return conn, info, err
}

func (c gatedCreds) Clone() credentials.TransportCredentials {
	return gatedCreds{TransportCredentials: c.TransportCredentials.Clone(), gate: c.gate, cut: c.cut}
}

// cutConn logs a connection cut before its TLS handshake ended; the gate
// counted it.
func (s *Server) cutConn(remote net.Addr, reason string) {
	msg := "closed an xDS connection that did not finish its TLS handshake within xds.handshakeTimeout"
	if reason != handshake.CutTimeout {
		msg = "shed an xDS connection still in its TLS handshake: too many were (xds.maxHandshakes, maxHandshakesPerSource)"
	}
	s.guard.warn(msg, zap.String("remote", remote.String()), zap.String("reason", reason))
}

// handshakeMetrics shows the gate's connections in their handshake and
// those it cut, by reason.
func handshakeMetrics(reg prometheus.Registerer, gate *handshake.Gate) {
	if reg == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshfed_xds_handshakes_in_progress",
		Help: "Connections to the xDS listener (TCP, mutual TLS) that have not finished their TLS handshake.",
	}, func() float64 { return float64(gate.InProgress()) }))
	for _, r := range handshake.CutReasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "meshfed_xds_handshakes_cut_total",
			Help:        "Connections the xDS listener closed before they finished their TLS handshake: shed as the oldest when xds.maxHandshakes (saturated) or maxHandshakesPerSource (source_saturated) were in their handshake, or not done within xds.handshakeTimeout (timeout).",
			ConstLabels: prometheus.Labels{"reason": r},
		}, func() float64 { return float64(gate.Cuts(r)) }))
	}
}
