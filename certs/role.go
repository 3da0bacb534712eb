package certs

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Role names whose identity an SVID is: the agent itself or one of its
// gateways. Each role is configured separately because the gateways run as
// their own workloads with their own SPIFFE IDs.
type Role string

const (
	RoleAgent   Role = "agent"
	RoleEgress  Role = "egress"
	RoleIngress Role = "ingress"
)

// Roles lists every role in a fixed order, for callers that iterate.
func Roles() []Role { return []Role{RoleAgent, RoleEgress, RoleIngress} }

// Validate reports whether r is one of the known roles.
func (r Role) Validate() error {
	switch r {
	case RoleAgent, RoleEgress, RoleIngress:
		return nil
	}
	return fmt.Errorf("certs: unknown role %q, want agent, egress or ingress", string(r))
}

// RoleID is the SPIFFE ID the development CA issues to a role:
// spiffe://<td>/meshfed/agent, .../meshfed/gateway/egress and
// .../meshfed/gateway/ingress.
func RoleID(td spiffeid.TrustDomain, r Role) (spiffeid.ID, error) {
	if err := r.Validate(); err != nil {
		return spiffeid.ID{}, err
	}
	if r == RoleAgent {
		return spiffeid.FromSegments(td, "meshfed", "agent")
	}
	return spiffeid.FromSegments(td, "meshfed", "gateway", string(r))
}
