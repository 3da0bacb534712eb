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
	"google.golang.org/grpc/credentials"
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

// recordingCreds is the listener's TLS, which records every handshake it
// refuses: gRPC drops the error, and TLS tells the client no more than an
// alert.
type recordingCreds struct {
	credentials.TransportCredentials
	cfg     *tls.Config
	refused func(remote net.Addr, presented spiffeid.ID, why string)
}

func newRecordingCreds(cfg *tls.Config, refused func(net.Addr, spiffeid.ID, string)) *recordingCreds {
	return &recordingCreds{TransportCredentials: credentials.NewTLS(cfg), cfg: cfg, refused: refused}
}

// ServerHandshake is the TLS handshake of credentials.NewTLS, on a copy of
// the configuration that notes the identity the client presents.
func (c *recordingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg := c.cfg.Clone()
	var presented spiffeid.ID
	if verify := cfg.VerifyPeerCertificate; verify != nil {
		cfg.VerifyPeerCertificate = func(rawCerts [][]byte, chains [][]*x509.Certificate) error {
			presented = leafID(rawCerts)
			return verify(rawCerts, chains)
		}
	}
	conn, info, err := credentials.NewTLS(cfg).ServerHandshake(raw)
	// A connection closed before it said anything is a port probe, not a
	// refused client.
	if err != nil && !errors.Is(err, io.EOF) {
		c.refused(raw.RemoteAddr(), presented, handshakeReason(err))
	}
	return conn, info, err
}

func (c *recordingCreds) Clone() credentials.TransportCredentials {
	return newRecordingCreds(c.cfg, c.refused)
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
	m.log.Warn("refused a Hamlet connection", zap.Strings("peers", names), zap.String("remote", r.Remote),
		zap.String("identity", r.Identity), zap.String("reason", why))
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
