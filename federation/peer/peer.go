// Package peer keeps the agent's Hamlet connections: it accepts the streams
// of peers that dial this agent and dials the peers this agent connects to,
// authorizes each by the SPIFFE ID in its certificate, and runs a session on
// every stream.
package peer

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/federation/catalog"
	"github.com/meshfed/meshfed/federation/session"
	"github.com/meshfed/meshfed/model"
)

// Spec is one configured peer.
type Spec struct {
	catalog.Peer
	// AnyIDInTrustDomain accepts any SPIFFE ID of the peer's trust domain
	// as its agent, a workload's too: only for a peer whose agent's ID is
	// not known. Without it (and without SPIFFEIDs) the peer's agent must
	// present spiffe://<trust domain>/meshfed/agent, the ID meshfed certs
	// init gives it; the configuration requires one of the two.
	AnyIDInTrustDomain bool
	// Dial is the peer's host:port when this agent connects to it; empty
	// when the peer connects to this agent.
	Dial string
	// Context is sent in the opening request when dialing. When accepting,
	// it is required in the peer's opening request if RequireContext is set.
	Context        string
	RequireContext bool
}

// agentIDs are the exact identities the peer's agent may present; nil for
// AnyIDInTrustDomain.
func (s *Spec) agentIDs() ([]spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(s.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("peer %q: trust domain %q: %w", s.Name, s.TrustDomain, err)
	}
	if s.AnyIDInTrustDomain {
		if len(s.SPIFFEIDs) > 0 {
			return nil, fmt.Errorf("peer %q: spiffeIds and anyIdInTrustDomain exclude each other", s.Name)
		}
		return nil, nil
	}
	if len(s.SPIFFEIDs) == 0 {
		id, err := certs.RoleID(td, model.Agent)
		return []spiffeid.ID{id}, err
	}
	ids := make([]spiffeid.ID, 0, len(s.SPIFFEIDs))
	for _, v := range s.SPIFFEIDs {
		id, err := spiffeid.FromString(v)
		if err != nil {
			return nil, fmt.Errorf("peer %q: spiffe id %q: %w", s.Name, v, err)
		}
		if id.TrustDomain() != td {
			return nil, fmt.Errorf("peer %q: spiffe id %q is not in trust domain %q", s.Name, v, s.TrustDomain)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// authorizer accepts exactly the identities the peer's agent may present.
// Its errors say why, for the log of a refused handshake.
func (s *Spec) authorizer() (tlsconfig.Authorizer, error) {
	ids, err := s.agentIDs()
	if err != nil {
		return nil, err
	}
	name := s.Name
	if ids == nil {
		td := spiffeid.RequireTrustDomainFromString(s.TrustDomain)
		return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
			if id.MemberOf(td) {
				return nil
			}
			return fmt.Errorf("%s is not in trust domain %q of peer %q", id, td.Name(), name)
		}, nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = id.String()
	}
	allowed := strings.Join(list, ", ")
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if slices.Contains(ids, id) {
			return nil
		}
		return fmt.Errorf("%s is not an agent identity of peer %q (spiffeIds: %s)", id, name, allowed)
	}, nil
}

// State is where a peer's connection stands.
type State string

// The states of a peer.
const (
	// Waiting: the peer dials this agent and has no stream now.
	Waiting State = "waiting"
	// Connecting: a dial or an opening exchange is under way.
	Connecting State = "connecting"
	// Connected: a stream is up.
	Connected State = "connected"
	// Backoff: the last stream failed; a retry is scheduled.
	Backoff State = "backoff"
	// Refused: the peer refused this agent's stream for a reason a change
	// on its side can cure (Status.Refusal says which); a retry is
	// scheduled.
	Refused State = "refused"
	// Failed: the peer refused this agent for a reason no change on its
	// side cures (Status.Refusal), or its address is unusable; it is not
	// dialed again until this agent's configuration changes.
	Failed State = "failed"
)

// Status is a peer's connection state, for the status API and metrics.
type Status struct {
	Name        string    `json:"name"`
	TrustDomain string    `json:"trustDomain"`
	Dial        string    `json:"dial,omitempty"`
	State       State     `json:"state"`
	Since       time.Time `json:"since"`
	// LastError is why the last stream failed, and LastErrorAt when; both
	// are cleared once a stream is up again.
	LastError   string     `json:"lastError,omitempty"`
	LastErrorAt *time.Time `json:"lastErrorAt,omitempty"`
	Reconnects  int        `json:"reconnects"`
	// Identity is the SPIFFE ID the peer presented on its current stream.
	Identity string `json:"identity,omitempty"`
	// NextRetry is when a peer in Backoff or Refused is dialed again.
	NextRetry *time.Time `json:"nextRetry,omitempty"`
	// Refusal is the peer's last refusal of this agent's stream; cleared
	// once a stream is up.
	Refusal *DialRefusal `json:"refusal,omitempty"`
	// LastSent and LastReceived are when a frame last went to and came
	// from the peer, on any stream.
	LastSent     *time.Time `json:"lastSent,omitempty"`
	LastReceived *time.Time `json:"lastReceived,omitempty"`
	// Capabilities is what both sides of the current stream negotiated;
	// nil while no stream is up.
	Capabilities *session.Capabilities `json:"capabilities,omitempty"`
	// Refused are the latest connections refused from clients presenting
	// an identity of the peer's trust domain.
	Refused  []Refusal `json:"refused,omitempty"`
	Imported int       `json:"imported"`
	Exported int       `json:"exported"`
}
