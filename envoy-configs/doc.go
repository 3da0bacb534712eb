// Package envoyconfigs holds the Envoy bootstrap files of meshfed's egress and
// ingress gateways (egress.yaml, ingress.yaml), the template they are
// generated from (Generate, which `meshfed bootstrap` runs; the files are its
// output for deploy/systemd/meshfed.yaml, and a test of cmd/meshfed fails
// when they drift), and ParseBootstrap, which decodes and validates a
// bootstrap the way the tests of this folder and of the demos check theirs.
package envoyconfigs
