// Package xds serves the gateways of the mesh over ADS, state of the world
// and delta, from a snapshot/cache.Cache through go-control-plane's server,
// and keeps what each gateway was sent, ACKed and rejected for the status API
// and metrics. Every stream passes a guard first (guard.go), which bounds
// the streams clients hold and holds each to the node id of its first
// request.
package xds
