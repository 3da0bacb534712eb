// Package envoyconfigs holds the Envoy bootstrap files of meshfed's egress and
// ingress gateways (egress.yaml, ingress.yaml), and ParseBootstrap, which
// decodes and validates a bootstrap the way the tests of this folder and of
// the demos check theirs.
package envoyconfigs
