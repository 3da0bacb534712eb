package catalog

import (
	"sort"
	"time"

	"google.golang.org/grpc/codes"
)

// Rejection is the NACK this agent sent for one of a peer's services, kept
// until the peer sends that service again in a form that is taken, deletes
// it, or leaves it out of a full catalog.
type Rejection struct {
	ResourceID string
	Code       codes.Code
	Message    string
	At         time.Time
}

// maxRejections bounds what one peer can make this agent remember by
// sending services under ever new ids; the NACKs themselves and the
// counters still cover every one.
const maxRejections = 1024

// Rejected records that this agent NACKed peer's resource id.
func (c *Catalog) Rejected(peer, id string, code codes.Code, msg string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.peers[peer]; !ok {
		return
	}
	byID := c.rejected[peer]
	if byID == nil {
		byID = map[string]Rejection{}
		c.rejected[peer] = byID
	}
	if _, ok := byID[id]; !ok && len(byID) >= maxRejections {
		return
	}
	byID[id] = Rejection{ResourceID: id, Code: code, Message: msg, At: at}
}

// Rejections lists the NACKs standing for peer's services, by resource id.
func (c *Catalog) Rejections(peer string) []Rejection {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Rejection, 0, len(c.rejected[peer]))
	for _, r := range c.rejected[peer] {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ResourceID < out[j].ResourceID })
	return out
}

// Rejection is the NACK standing for peer's resource id, if any.
func (c *Catalog) Rejection(peer, id string) (Rejection, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.rejected[peer][id]
	return r, ok
}

func (c *Catalog) clearRejectionLocked(peer, id string) {
	if byID := c.rejected[peer]; byID != nil {
		delete(byID, id)
	}
}
