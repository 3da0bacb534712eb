package xds

import "time"

// ClientStatus is what the server knows of one xDS stream.
type ClientStatus struct {
	StreamID int64  `json:"stream_id"` // unique per Stream kind
	NodeID   string `json:"node_id"`
	Role     string `json:"role"`   // "unknown" for a node that is not a gateway of ours
	Stream   string `json:"stream"` // "sotw" or "delta"
	// Channel is unix, mtls or plaintext (which serves no private key).
	Channel string `json:"channel,omitempty"`
	// SPIFFEID is the gateway's identity, over mutual TLS.
	SPIFFEID    string       `json:"spiffe_id,omitempty"`
	ConnectedAt time.Time    `json:"connected_at"`
	Types       []TypeStatus `json:"types"`
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
