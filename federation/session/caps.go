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
	// ServicesPerResponse is how many services one response may carry
	// (wire.Batch); 0 and 1 both mean the specification's one.
	ServicesPerResponse int `json:"servicesPerResponse"`
}

// MD is the metadata that advertises c.
func (c Capabilities) MD() metadata.MD {
	if s := c.String(); s != "" {
		return metadata.Pairs(CapabilitiesKey, s)
	}
	return metadata.MD{}
}

// String is c as advertised: "sync-complete,window=64,services-per-response=256",
// or "" for plain specification behaviour.
func (c Capabilities) String() string {
	var parts []string
	if c.SyncComplete {
		parts = append(parts, "sync-complete")
	}
	if c.Window > 1 {
		parts = append(parts, "window="+strconv.Itoa(c.Window))
	}
	if c.ServicesPerResponse > 1 {
		parts = append(parts, "services-per-response="+strconv.Itoa(c.ServicesPerResponse))
	}
	return strings.Join(parts, ",")
}

// ParseCapabilities reads what a peer advertised. Unknown extensions and
// malformed or out-of-range values are ignored: they only make the stream
// more conservative.
func ParseCapabilities(md metadata.MD) Capabilities {
	var c Capabilities
	for _, v := range md.Get(CapabilitiesKey) {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if p == "sync-complete" {
				c.SyncComplete = true
			} else if n, ok := count(p, "window=", maxWindow); ok {
				c.Window = n
			} else if n, ok := count(p, "services-per-response=", maxServicesPerResponse); ok {
				c.ServicesPerResponse = n
			}
		}
	}
	return c
}

// count reads "<prefix>N" with 1 < N <= most.
func count(p, prefix string, most int) (int, bool) {
	s, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 1 || n > most {
		return 0, false
	}
	return n, true
}

// maxWindow bounds what a peer can make this agent keep in flight, and so
// the memory it holds per stream.
const maxWindow = 4096

// maxServicesPerResponse bounds the services of one response, either way:
// an answer to a batch holds a status per service, and the consumer
// stores a response's services in one transaction.
const maxServicesPerResponse = 4096

// Negotiate is what both sides agree on: an extension only when both speak
// it, and the smaller window and services per response.
func Negotiate(local, remote Capabilities) Capabilities {
	return Capabilities{
		SyncComplete:        local.SyncComplete && remote.SyncComplete,
		Window:              min(max(local.Window, 1), max(remote.Window, 1)),
		ServicesPerResponse: min(max(local.ServicesPerResponse, 1), max(remote.ServicesPerResponse, 1)),
	}
}
