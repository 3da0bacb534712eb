package model

import "fmt"

// Role is a part of a mesh's meshfed with an identity of its own: the agent,
// or one of its gateways. Each gateway role is a separate Envoy node, and
// every gateway of a role is sent the same resources.
type Role string

const (
	// Agent is the meshfed agent: it speaks Hamlet to the peers.
	Agent Role = "agent"
	// Egress carries local workloads' calls to imported services.
	Egress Role = "egress"
	// Ingress accepts peers' calls to exported services.
	Ingress Role = "ingress"
)

// GatewayRoles lists the gateway roles, in output order.
var GatewayRoles = []Role{Egress, Ingress}

// Validate reports whether r is one of the known roles.
func (r Role) Validate() error {
	switch r {
	case Agent, Egress, Ingress:
		return nil
	}
	return fmt.Errorf("unknown role %q, want agent, egress or ingress", string(r))
}
