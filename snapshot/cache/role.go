package cache

import "github.com/meshfed/meshfed/model"

// NodeRole maps an Envoy node id to the role of gateway it is, whose
// resources it is served; ok is false for a node that is not one of ours.
type NodeRole func(nodeID string) (role model.Role, ok bool)
