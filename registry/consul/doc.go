// Package consul connects meshfed to a Consul datacenter, both ways.
//
// Source exports Consul services: those that Config.Export selects by
// name, by tag or by service meta, with their instances that pass all
// their checks as local endpoints. It follows the catalog with blocking
// queries (one for the service list, one per candidate service), backing
// off with jitter when Consul fails and keeping the last good set
// meanwhile. Each service is one export, <service>.<domainSuffix>; its
// instances' service meta say how:
//
//	meshfed-protocol   HTTP HTTPS GRPC HTTP2 MONGO TCP TLS MTLS (default TCP)
//	meshfed-port-name  the export port the instance serves (default "default")
//	meshfed-consumers  a,b: the peers allowed, instead of export.consumers
//
// Instances with one port name form one export port, known by their Consul
// service port (the lowest, if they differ). An instance whose meta is
// invalid is left out, and a service that makes no valid export is not
// exported; both are logged.
//
// An export without endpoints is not valid in Hamlet, so a service with no
// passing instance left cannot be exported as such. OnEmpty "delete" (the
// default) withdraws it: peers drop its routes, and callers fail fast. With
// "keep" the last export that had passing instances stays, endpoints and
// all, until instances pass again: for a service whose health flaps, or
// whose checks may all fail during a deploy, without peers tearing down and
// rebuilding their configuration each time. Kept exports live in memory
// only; a restart forgets them.
//
// Sink registers imports in the catalog, as external services on one
// synthetic node per peer, <nodePrefix><peer>, with node meta
// external-node=true and meshfed-managed=true. Each imported instance is a
// service instance named by the name template, at the egress gateway's
// address and port, tagged with the instance id, the protocol, peer-<peer>
// and meshfed-imported, and with meta meshfed-managed, meshfed-peer,
// meshfed-name, meshfed-fqdn, meshfed-local-fqdn, meshfed-instance and
// meshfed-protocol. A Sync reads what is on the meshfed-managed nodes,
// registers what is missing or changed and deregisters what it registered
// that is no longer wanted: leftovers of an earlier process included, and
// never a node or service without its meta. One meshfed agent manages a
// datacenter's meshfed nodes; two would remove each other's.
//
// The writes of a Sync go in Consul transactions, at most 64 operations
// each (Consul's limit). Consul checks the ACLs of all of a transaction's
// operations before it applies any, and applies all or nothing, so a token
// that may not write some of them gets an error naming the operations and
// Consul's reason, and nothing is registered. A Sync of more than 64
// operations stops at the first transaction that fails, leaving the ones
// before it applied; the next Sync completes the work. A token Consul does
// not know is refused at the first read, before any write.
//
// The ACL token comes from Config.TokenFile, else $CONSUL_HTTP_TOKEN. It is
// sent in a header, and never logged or put in an error.
package consul
