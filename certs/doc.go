// Package certs holds the agent's SPIFFE identity material: X.509 SVIDs for
// the agent and its gateways, one trust bundle per federated trust domain,
// the agent's own bundle endpoint, the development CA, and the TLS
// configurations for Hamlet peer connections.
//
// Everything that can change at run time (SVIDs, bundles) is read through
// go-spiffe source interfaces on each TLS handshake, so rotation never needs
// a restart, and every change is announced on a coalescing channel so the
// xDS layer can push SDS updates under unchanged secret names.
package certs
