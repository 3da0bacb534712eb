package snapshot

// What the external tests check of the translation's parts.
var (
	SelectEndpoints = selectEndpoints
	VirtualHost     = virtualHost
	TCPProxy        = tcpProxy
	SocketAddress_  = socketAddress
	Consumers       = consumers
)

type HostPort = hostPort
