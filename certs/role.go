package certs

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/model"
)

// Role names whose identity an SVID is: the agent itself or one of its
// gateways. Each role is configured separately because the gateways run as
// their own workloads with their own SPIFFE IDs.
type Role = model.Role

// The roles, under the names this package used.
const (
	RoleAgent   = model.Agent
	RoleEgress  = model.Egress
	RoleIngress = model.Ingress
)

// Roles lists every role in a fixed order, for callers that iterate.
func Roles() []Role { return []Role{RoleAgent, RoleEgress, RoleIngress} }

// RoleID is the SPIFFE ID the development CA issues to a role:
// spiffe://<td>/meshfed/agent, .../meshfed/gateway/egress and
// .../meshfed/gateway/ingress.
func RoleID(td spiffeid.TrustDomain, r Role) (spiffeid.ID, error) {
	if err := r.Validate(); err != nil {
		return spiffeid.ID{}, fmt.Errorf("certs: %w", err)
	}
	if r == RoleAgent {
		return spiffeid.FromSegments(td, "meshfed", "agent")
	}
	return spiffeid.FromSegments(td, "meshfed", "gateway", string(r))
}
