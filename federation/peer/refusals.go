package peer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/credentials"

	"github.com/meshfed/meshfed/internal/handshake"
)

// Refusal is a connection the Hamlet listener refused: in the TLS
// handshake, or when the stream opened.
type Refusal struct {
	At     time.Time `json:"at"`
	Remote string    `json:"remote"`
	// Identity is the SPIFFE ID in the certificate the client presented,
	// as presented: when the handshake failed it was not verified.
	Identity string `json:"identity,omitempty"`
	Reason   string `json:"reason"`
}

// maxRefusals is how many refusals are kept per peer, and for clients of
// no known peer: the latest ones, so that a client that retries forever
// cannot make this agent hold more.
const maxRefusals = 8

var refusedDesc = prometheus.NewDesc("meshfed_hamlet_refused_connections_total",
	"Connections the Hamlet listener refused, in the TLS handshake or when the stream opened, by the peer whose trust domain the client presented (empty when none).",
	[]string{"peer"}, nil)

// recordingCreds is the listener's TLS, which bounds the connections in
// their handshake (a handshake.Gate) and records every handshake it refuses or
// cuts: gRPC drops the error, and TLS tells the client no more than an
// alert.
type recordingCreds struct {
	credentials.TransportCredentials
	cfg     *tls.Config
	gate    *handshake.Gate
	refused func(remote net.Addr, presented spiffeid.ID, why string)
	cut     func(remote net.Addr, reason string)
}

func newRecordingCreds(cfg *tls.Config, gate *handshake.Gate, refused func(net.Addr, spiffeid.ID, string), cut func(net.Addr, string)) *recordingCreds {
	return &recordingCreds{TransportCredentials: credentials.NewTLS(cfg), cfg: cfg, gate: gate, refused: refused, cut: cut}
}

// ServerHandshake is the TLS handshake of credentials.NewTLS, on a copy of
// the configuration that notes the identity the client presents. gRPC has
// set the connection's deadline (HandshakeTimeout) before.
func (c *recordingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg := c.cfg.Clone()
	var presented spiffeid.ID
	if verify := cfg.VerifyPeerCertificate; verify != nil {
		cfg.VerifyPeerCertificate = func(rawCerts [][]byte, chains [][]*x509.Certificate) error {
			presented = leafID(rawCerts)
			return verify(rawCerts, chains)
		}
	}
	conn, info, cut, err := c.gate.Handshake(raw, credentials.NewTLS(cfg).ServerHandshake)
	switch {
	case err == nil:
		return conn, info, nil
	case cut != "":
		c.cut(raw.RemoteAddr(), cut)
	case errors.Is(err, io.EOF):
		// A connection closed before it said anything is a port probe,
		// not a refused client.
	default:
		c.refused(raw.RemoteAddr(), presented, handshakeReason(err))
	}
	return nil, nil, err
}

func (c *recordingCreds) Clone() credentials.TransportCredentials {
	return newRecordingCreds(c.cfg, c.gate, c.refused, c.cut)
}

// leafID is the SPIFFE ID of the presented leaf, unverified; zero when it
// has none.
func leafID(rawCerts [][]byte) spiffeid.ID {
	if len(rawCerts) == 0 {
		return spiffeid.ID{}
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return spiffeid.ID{}
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}
	}
	return id
}

// handshakeReason says why a handshake failed, in the words of whoever
// failed it, with a hint where the error alone is cryptic.
func handshakeReason(err error) string {
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &rh):
		return "not TLS (a plaintext client?): " + err.Error()
	case strings.Contains(err.Error(), "remote error: tls: "):
		return "the client refused this agent's certificate: " + err.Error()
	}
	return err.Error()
}

// refusedConn logs and records a refused connection under every peer of
// the trust domain the client presented, or as of no known peer.
func (m *Manager) refusedConn(remote net.Addr, presented spiffeid.ID, why string) {
	r := Refusal{At: time.Now(), Remote: remote.String(), Reason: why}
	if !presented.IsZero() {
		r.Identity = presented.String()
	}
	m.mu.Lock()
	var names []string
	for _, name := range m.order {
		if p := m.peers[name]; !presented.IsZero() && p.spec.TrustDomain == presented.TrustDomain().Name() {
			names = append(names, name)
			p.status.Refused = keepLatest(p.status.Refused, r)
			p.refusedTotal++
		}
	}
	if len(names) == 0 {
		m.unattributed = keepLatest(m.unattributed, r)
		m.unattributedTotal++
	}
	m.mu.Unlock()
	m.sampled.Warn("refused a Hamlet connection", zap.Strings("peers", names), zap.String("remote", r.Remote),
		zap.String("identity", r.Identity), zap.String("reason", why))
}

// cutConn logs a connection the listener closed before its TLS handshake
// ended; handshakes counted it.
func (m *Manager) cutConn(remote net.Addr, reason string) {
	msg := "closed a Hamlet connection that did not finish its TLS handshake within federation.handshakeTimeout"
	if reason != handshake.CutTimeout {
		msg = "shed a Hamlet connection still in its TLS handshake: too many were (federation.maxHandshakes, maxHandshakesPerSource)"
	}
	m.sampled.Warn(msg, zap.String("remote", remote.String()), zap.String("reason", reason))
}

// The sampling of the warnings a client can cause at will (refused and
// cut connections): the first few of each minute, then one in a thousand,
// so that a flood writes a line a second or so instead of hundreds of KB;
// the metrics count every one.
const (
	sampleTick       = time.Minute
	sampleFirst      = 10
	sampleThereafter = 1000
)

// sampledLogger is log, sampled for the warnings any client can cause.
func sampledLogger(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, sampleTick, sampleFirst, sampleThereafter)
	}))
}

func keepLatest(rs []Refusal, r Refusal) []Refusal {
	if len(rs) >= maxRefusals {
		rs = append(rs[:0:0], rs[len(rs)-maxRefusals+1:]...)
	}
	return append(rs, r)
}

// Refused lists the latest refused connections of clients that presented
// no trust domain of a configured peer.
func (m *Manager) Refused() []Refusal {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Refusal(nil), m.unattributed...)
}
