package cache

import "github.com/meshfed/meshfed/model"

// Role is the kind of gateway a set of resources is for.
type Role = model.Role

// The roles of meshfed's gateways, under the names this package used.
const (
	RoleEgress  = model.Egress
	RoleIngress = model.Ingress
)

// NodeRole maps an Envoy node id to its role; ok is false for a node that is
// not one of ours.
type NodeRole func(nodeID string) (role Role, ok bool)
