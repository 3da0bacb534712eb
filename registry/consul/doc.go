// Package consul connects meshfed to a Consul datacenter, both ways.
//
// Source exports Consul services: those that Config.Export selects by
// name, by tag or by service meta, with their instances that pass all
// their checks as local endpoints. Each service is one export,
// <service>.<domainSuffix>; its instances' service meta say how:
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
// A service with Connect sidecars (connect-proxy services whose
// Proxy.DestinationServiceName is the service) or Connect-native
// instances is reached with Consul's mutual TLS, as a sidecar would: its
// endpoints are the passing sidecars of its selected passing instances
// (a sidecar fronts the instance its Proxy.DestinationServiceID names on
// its node, or without one the first there) and its passing native
// instances, read from /v1/health/connect; its ports keep the instances'
// port numbers and meta, and each names the service
// (model.ExportPort.ConsulService). An instance behind no passing sidecar
// is left out, as one failing its checks: such a service is never
// exported at its instances' own addresses. A terminating gateway, which
// Consul lists among the Connect instances of the services it fronts,
// leaves them plain services. It needs mode terminate: in
// passthrough the ingress would not originate Consul's TLS. A Connect
// proxy or a gateway is never exported as a service of its own, though
// the agent gives a sidecar its service's tags and meta: only a
// service's own instances (kind typical) are selected.
//
// The source costs Consul a bounded number of connections, six, however
// many services it follows: Consul refuses a client's connections past
// limits.http_max_conns_per_client (200), to every process of its host.
// One blocking query follows the list of services, whose index moves with
// every registration in the datacenter; as the list does not tell which
// registration changed, each move reads every candidate service again (a
// sweep: 2,000 services in about 0.4 s on loopback). A probe follows the
// checks (a filter no check passes: an empty answer and the checks'
// index); when it moves, the checks are read once in full, and only the
// services whose checks changed are read, before a sweep's (a change of
// a node's check is a sweep). Four readers read the services, without
// blocking; a read that fails keeps the service's last state and is
// retried with a backoff. Idle connections are kept for the next read,
// and closed when Run returns.
//
// Consul may hold a blocking query for 5 s: an index that went backwards
// (Consul restarted without its data, and 1.8 holds a query whose index
// is ahead of its own for its whole wait) is seen within that, or at once
// when a query failed meanwhile (the next is asked without an index), and
// at the answer of any read. Then every query starts over from 0, and
// what was read stays until it is read again. While Consul fails, the last
// good set stays, and every query is retried with a backoff.
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
