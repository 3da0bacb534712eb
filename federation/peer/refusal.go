package peer

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RefusalKind says why a peer refused this agent's stream. Every kind but
// Incompatible is one a change on the peer's side can cure (an operator
// adds this mesh, or corrects an identity or a token), so it is retried
// with backoff: a peer removed and added back by a reload finds its
// dialer again without a restart.
type RefusalKind string

// The kinds of refusal, as meshfed tells them apart.
const (
	// NotAPeer: the peer has no peer of this agent's trust domain in its
	// configuration (not added yet, or removed).
	NotAPeer RefusalKind = "not-a-peer"
	// IdentityNotAccepted: the peer knows this agent's trust domain, but
	// not the SPIFFE ID it presented (its spiffeIds for this mesh).
	IdentityNotAccepted RefusalKind = "identity-not-accepted"
	// DialsToo: the peer is configured to dial this agent as well, so it
	// accepts no stream from it; one of the two must stop dialing.
	DialsToo RefusalKind = "dials-too"
	// ContextRefused: the peer requires another context token in the
	// opening request (peers[].context).
	ContextRefused RefusalKind = "context-refused"
	// Unexplained: PermissionDenied or Unauthenticated from a peer that
	// does not say why (another Hamlet implementation). The Hamlet
	// specification reads Unauthenticated as "not federated"; it is
	// retried all the same, since federating is a change on the peer's
	// side, at the pace of the backoff's cap.
	Unexplained RefusalKind = "unexplained"
	// Incompatible: the peer serves no Hamlet discovery service at that
	// address (Unimplemented), or refused the opening request itself
	// (InvalidArgument): no configuration of the peer changes that, so
	// the dialing stops until this agent's configuration changes.
	Incompatible RefusalKind = "incompatible"
)

// Final reports whether no change on the peer's side can cure the refusal.
func (k RefusalKind) Final() bool { return k == Incompatible }

// DialRefusal is the last refusal of a dialed peer, for the status.
type DialRefusal struct {
	Kind RefusalKind `json:"kind"`
	// Final is set when the dialing stopped: see RefusalKind.Final.
	Final   bool      `json:"final"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// errorDomain names meshfed in the ErrorInfo of its refusals, whose
// Reason is the refusal's kind: a client tells the kinds apart by it,
// never by a message's wording.
const errorDomain = "meshfed.io"

// reasons are the ErrorInfo reasons of the kinds an acceptor sends.
var reasons = map[RefusalKind]string{
	NotAPeer:            "PEER_NOT_CONFIGURED",
	IdentityNotAccepted: "IDENTITY_NOT_ACCEPTED",
	DialsToo:            "PEER_DIALS_TOO",
	ContextRefused:      "CONTEXT_REFUSED",
}

// refusal is why the acceptor refuses a client, as it refuses it.
type refusal struct {
	kind RefusalKind
	msg  string
}

func (r *refusal) Error() string { return r.msg }

// status is the refusal as the client receives it: PermissionDenied, or
// Unauthenticated for a token, with the kind in an ErrorInfo.
func (r *refusal) status() error {
	code := codes.PermissionDenied
	if r.kind == ContextRefused {
		code = codes.Unauthenticated
	}
	st := status.New(code, r.msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reasons[r.kind], Domain: errorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// classify tells a refusal from the other ways a dialed stream ends (nil
// when it is none). received says whether anything came from the peer on
// the stream: an InvalidArgument before that is the peer refusing the
// opening request.
func classify(err error, received bool, at time.Time) *DialRefusal {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return nil
	}
	var kind RefusalKind
	switch st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated:
		kind = Unexplained
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
				if k, ok := kindOf(info.GetReason()); ok {
					kind = k
				}
			}
		}
	case codes.Unimplemented:
		kind = Incompatible
	case codes.InvalidArgument:
		if received {
			return nil
		}
		kind = Incompatible
	default:
		return nil
	}
	return &DialRefusal{Kind: kind, Final: kind.Final(), Message: err.Error(), At: at}
}

func kindOf(reason string) (RefusalKind, bool) {
	for k, r := range reasons {
		if r == reason {
			return k, true
		}
	}
	return "", false
}
