// Package xds serves the gateways of the mesh over ADS, state of the world
// and delta, from a snapshot/cache.Cache through go-control-plane's server,
// and keeps what each gateway was sent, ACKed and rejected for the status API
// and metrics.
package xds
