package certs

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshfed/meshfed/model"
)

// Roles lists every role that has an SVID (the agent and its gateways,
// each its own workload with its own SPIFFE ID), in a fixed order.
func Roles() []model.Role { return []model.Role{model.Agent, model.Egress, model.Ingress} }

// RoleID is the SPIFFE ID the development CA issues to a role:
// spiffe://<td>/meshfed/agent, .../meshfed/gateway/egress and
// .../meshfed/gateway/ingress.
func RoleID(td spiffeid.TrustDomain, r model.Role) (spiffeid.ID, error) {
	if err := r.Validate(); err != nil {
		return spiffeid.ID{}, fmt.Errorf("certs: %w", err)
	}
	if r == model.Agent {
		return spiffeid.FromSegments(td, "meshfed", "agent")
	}
	return spiffeid.FromSegments(td, "meshfed", "gateway", string(r))
}
