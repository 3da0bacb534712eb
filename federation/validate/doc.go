// Package validate is the edge where a peer's FederatedService enters this
// agent: it checks a Hamlet StreamResponse and the service it carries against
// the peer's Policy and returns a model.Service that the rest of the agent
// may trust. Every error is a gRPC InvalidArgument status whose message
// names the field path and the offending value, ready to go back in a NACK.
// Nothing here panics on any input, and beyond unmarshaling the success path
// allocates only the returned service.
package validate
