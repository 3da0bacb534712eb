package peer

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// explain rewrites the error of a dial that got nothing from the peer,
// when its cause is hidden by TLS: a peer that refuses this agent's
// certificate tells the dialer no more than an alert such as "bad
// certificate", or only cuts the connection (in TLS 1.3 the client's side
// of the handshake is over before the server has checked the client's
// certificate, so the dialer may see a reset, EOF or broken pipe on its
// first read or write). A connection cut during the handshake is not that:
// the peer had not seen this agent's certificate yet; a saturated meshfed
// listener says so with a user_canceled alert. Other errors pass as they
// are. The code stays, so retries go on: a refusal may end once the peer's
// bundle or configuration catches up (a new connection of a peer this
// side does not know is refused in its handshake, before a stream could
// say so: see RefusalKind for what a stream says).
func (m *Manager) explain(p *peerRun, err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return err
	}
	msg := st.Message()
	const hint = "(it may have no peer for this agent, or not accept it: its trust bundle for this mesh, its spiffeIds for this agent, " +
		"or the certificate's validity); its meshfed status lists the refused connection with the reason; retrying with backoff"
	during := strings.Contains(msg, "authentication handshake failed")
	switch {
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return status.Errorf(codes.Unavailable, "peer %q at %s does not speak TLS (a plaintext server?): %s", p.spec.Name, p.spec.Dial, msg)
	case strings.Contains(msg, "remote error: tls: user canceled"):
		return status.Errorf(codes.Unavailable, "peer %q at %s is saturated: its Hamlet listener has too many connections in their TLS handshake (a flood, or many peers at once) and shed this one before it began; retrying with backoff. TLS said: %s",
			p.spec.Name, p.spec.Dial, msg)
	case during && closedEarly(msg):
		return status.Errorf(codes.Unavailable, "peer %q at %s closed the connection during the TLS handshake, before it checked this agent's certificate: its Hamlet listener may be saturated (it sheds the oldest connections still in their handshake), the handshake took longer than it allows, or it is restarting; retrying with backoff. The connection ended with: %s",
			p.spec.Name, p.spec.Dial, msg)
	case during && !strings.Contains(msg, "remote error: tls: "):
		return status.Errorf(codes.Unavailable, "this agent refused peer %q's certificate: %s", p.spec.Name, msg)
	case strings.Contains(msg, "remote error: tls: "):
		return status.Errorf(codes.Unavailable, "peer %q refused this agent's certificate%s in the TLS handshake %s. TLS said: %s",
			p.spec.Name, m.ownIdentity(), hint, msg)
	case closedEarly(msg):
		return status.Errorf(codes.Unavailable, "peer %q ended the connection right after the TLS handshake, before the stream opened: most likely it refused this agent's certificate%s %s. The connection ended with: %s",
			p.spec.Name, m.ownIdentity(), hint, msg)
	}
	return err
}

// closedEarly says whether msg is that of a connection the other side cut.
func closedEarly(msg string) bool {
	return strings.Contains(msg, "reset by peer") || strings.Contains(msg, "broken pipe") || strings.Contains(msg, "EOF")
}

// ownIdentity names this agent's SVID for an error message: its ID, and
// that it expired if it did.
func (m *Manager) ownIdentity() string {
	t, ok := m.cfg.TLS.(SPIFFETLS)
	if !ok || t.SVID == nil {
		return ""
	}
	svid, err := t.SVID.GetX509SVID()
	if err != nil || len(svid.Certificates) == 0 {
		return ""
	}
	out := " " + svid.ID.String()
	if na := svid.Certificates[0].NotAfter; time.Now().After(na) {
		out += fmt.Sprintf(" (it expired at %s)", na.UTC().Format(time.RFC3339))
	}
	return out
}
