package cache

// Role is the kind of gateway a set of resources is for. Every gateway of a
// role gets the same resources.
type Role string

// The roles of meshfed's gateways.
const (
	RoleEgress  Role = "egress"
	RoleIngress Role = "ingress"
)

// NodeRole maps an Envoy node id to its role; ok is false for a node that is
// not one of ours.
type NodeRole func(nodeID string) (role Role, ok bool)
