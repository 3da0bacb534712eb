package xds

import "time"

// ClientStatus is what the server knows of one xDS stream.
type ClientStatus struct {
	StreamID int64 `json:"streamId"` // unique per Stream kind
	Gateway
	Types []TypeStatus `json:"types"`
}

// Gateway is who is at the other end of a stream, and how it came: what
// every view of the gateways starts with.
type Gateway struct {
	NodeID string `json:"nodeId"`
	// Role is egress, ingress, or unknown for a node id that is not one of
	// this agent's gateways.
	Role string `json:"role"`
	// Stream is sotw or delta.
	Stream string `json:"stream"`
	// Channel is unix, mtls or plaintext (which serves no private key).
	Channel string `json:"channel,omitempty"`
	// SPIFFEID is the gateway's identity, over mutual TLS.
	SPIFFEID    string    `json:"spiffeId,omitempty"`
	ConnectedAt time.Time `json:"connectedAt"`
}

// TypeStatus is the state of one type on a stream.
type TypeStatus struct {
	TypeURL      string    `json:"typeUrl"`
	SentVersion  string    `json:"sentVersion,omitempty"`
	SentNonce    string    `json:"sentNonce,omitempty"`
	SentAt       time.Time `json:"sentAt,omitzero"`
	AckedVersion string    `json:"ackedVersion,omitempty"`
	AckedAt      time.Time `json:"ackedAt,omitzero"`
	// LastNack is the last response of the type the gateway rejected, also
	// once a later one was ACKed.
	LastNack *Nack `json:"lastNack,omitempty"`
}

// Nack is a response a gateway rejected, and why.
type Nack struct {
	// Version is the rejected version, when the nonce was recent enough to
	// be remembered.
	Version string    `json:"version,omitempty"`
	Nonce   string    `json:"nonce,omitempty"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}
