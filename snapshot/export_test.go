package snapshot

import "github.com/meshfed/meshfed/model"

// What the external tests check of the translation's parts.
var (
	SelectEndpoints = selectEndpoints
	VirtualHost     = virtualHost
	TCPProxy        = tcpProxy
	SocketAddress_  = socketAddress
)

// Consumers are the configured peers among exp's consumers.
func Consumers(in *Input, exp model.Export) []model.Peer {
	return consumers(&view{Settings: in.Settings}, exp)
}

type HostPort = hostPort

// Unescape inverts the escape of a name's field; ok is false for a string
// escape cannot produce.
var Unescape = unescape
