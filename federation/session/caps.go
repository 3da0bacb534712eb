package session

import (
	"strconv"
	"strings"

	"google.golang.org/grpc/metadata"
)

// CapabilitiesKey is the gRPC metadata key under which an agent advertises
// the extensions it speaks beyond the Hamlet specification. A peer that
// sends none gets plain specification behaviour.
const CapabilitiesKey = "meshfed-capabilities"

// Capabilities are the extensions one side of a stream understands.
type Capabilities struct {
	// SyncComplete: the side understands the end-of-initial-catalog marker.
	SyncComplete bool `json:"syncComplete"`
	// Window is how many responses the side accepts unacknowledged; 0 and 1
	// both mean the specification's one in flight.
	Window int `json:"window"`
}

// MD is the metadata that advertises c.
func (c Capabilities) MD() metadata.MD {
	if s := c.String(); s != "" {
		return metadata.Pairs(CapabilitiesKey, s)
	}
	return metadata.MD{}
}

// String is c as advertised: "sync-complete,window=64", or "" for plain
// specification behaviour.
func (c Capabilities) String() string {
	var parts []string
	if c.SyncComplete {
		parts = append(parts, "sync-complete")
	}
	if c.Window > 1 {
		parts = append(parts, "window="+strconv.Itoa(c.Window))
	}
	return strings.Join(parts, ",")
}

// ParseCapabilities reads what a peer advertised. Unknown extensions and
// malformed values are ignored: they only make the stream more conservative.
func ParseCapabilities(md metadata.MD) Capabilities {
	var c Capabilities
	for _, v := range md.Get(CapabilitiesKey) {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			switch {
			case p == "sync-complete":
				c.SyncComplete = true
			case strings.HasPrefix(p, "window="):
				if n, err := strconv.Atoi(strings.TrimPrefix(p, "window=")); err == nil && n > 1 && n <= maxWindow {
					c.Window = n
				}
			}
		}
	}
	return c
}

// maxWindow bounds what a peer can make this agent keep in flight, and so
// the memory it holds per stream.
const maxWindow = 4096

// Negotiate is what both sides agree on: an extension only when both speak
// it, and the smaller window.
func Negotiate(local, remote Capabilities) Capabilities {
	w := min(max(local.Window, 1), max(remote.Window, 1))
	return Capabilities{SyncComplete: local.SyncComplete && remote.SyncComplete, Window: w}
}
