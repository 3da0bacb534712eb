package agent

import (
	"fmt"
	"time"

	"github.com/meshfed/meshfed/model"
)

// StaleProblemAfter is how long a gateway may hold a type STALE before
// meshfed status calls it a problem. A push is ACKed within milliseconds
// on a healthy gateway; a type still unACKed after this long is a gateway
// that is stuck, overloaded or gone without its stream ending.
const StaleProblemAfter = 30 * time.Second

// gatewayProblems are the gateways' part of Problems, as of now: a role
// without a connected gateway (nothing serves that side of the mesh), a
// type a gateway NACKed (it keeps what it held, which is not what the
// agent serves), a type STALE for longer than StaleProblemAfter, and a
// node id that is none of this agent's gateways (a bootstrap with the
// wrong node id, served nothing).
func (s Status) gatewayProblems(now time.Time) []string {
	var out []string
	connected := map[string]bool{}
	for _, g := range s.Gateways {
		for _, t := range g.Types {
			switch t.State {
			case Unserved:
				out = append(out, fmt.Sprintf("gateway %s (%s stream) is served nothing: its node id is none of gateways.egress.nodeIds or gateways.ingress.nodeIds",
					g.NodeID, g.Stream))
			case Nacked:
				reason := ""
				if t.LastNack != nil {
					reason = ": " + t.LastNack.Reason
				}
				out = append(out, fmt.Sprintf("gateway %s (%s) rejected %s version %s%s", g.NodeID, g.Role, typeName(t.TypeURL), dashed(t.WantedVersion), reason))
			case Stale:
				if since := staleSince(g, t); now.Sub(since) > StaleProblemAfter {
					out = append(out, fmt.Sprintf("gateway %s (%s) has not ACKed %s version %s for %s (it holds %s)",
						g.NodeID, g.Role, typeName(t.TypeURL), dashed(t.WantedVersion), now.Sub(since).Round(time.Second), dashed(t.AckedVersion)))
				}
			}
			if t.State != Unserved {
				connected[g.Role] = true
			}
		}
		if len(g.Types) == 0 && g.Role != "unknown" {
			connected[g.Role] = true
		}
	}
	for _, role := range model.GatewayRoles {
		if !connected[string(role)] {
			out = append(out, fmt.Sprintf("no %s gateway is connected to the agent's xDS server", role))
		}
	}
	return out
}

// staleSince is when a STALE type last moved: the latest of the stream's
// start, the last response sent and the last ACK. The type has been STALE
// for at least the time since, so a stuck gateway is never reported early.
func staleSince(g GatewayView, t GatewayType) time.Time {
	since := g.ConnectedAt
	for _, at := range []time.Time{t.SentAt, t.AckedAt} {
		if at.After(since) {
			since = at
		}
	}
	return since
}

// typeName is the message name of a type URL: Cluster, Listener...
func typeName(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}

func dashed(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
