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
	TypeURL          string    `json:"type_url"`
	LastSentVersion  string    `json:"last_sent_version,omitempty"`
	LastSentNonce    string    `json:"last_sent_nonce,omitempty"`
	LastSentAt       time.Time `json:"last_sent_at,omitzero"`
	LastAckedVersion string    `json:"last_acked_version,omitempty"`
	LastAckedAt      time.Time `json:"last_acked_at,omitzero"`
	LastNack         *Nack     `json:"last_nack,omitempty"`
}

// Nack is a response a gateway rejected.
type Nack struct {
	// Version is the rejected version, when the nonce was recent enough to
	// be remembered.
	Version string    `json:"version,omitempty"`
	Nonce   string    `json:"nonce"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}
