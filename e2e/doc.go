// Package e2e is meshfed's end-to-end suite: two meshes on loopback, each
// with its agent and real Envoy egress and ingress gateways, and real
// upstream servers (HTTP/1.1, h2c, gRPC, TCP, WebSocket, TLS) behind them.
// Every test asserts on the bytes a client received and on Envoy's own
// counters, and every Envoy must end its test without a rejected update and
// with exactly the configuration its agent says it served.
//
// The tests need an envoy binary (scripts/install-envoy.sh, run by make
// test); without one they are skipped, and with MESHFED_REQUIRE_ENVOY=1
// (CI) they fail.
package e2e
