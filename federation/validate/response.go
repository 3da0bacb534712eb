package validate

import (
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/model"
)

// typeURL is the Any type URL of a FederatedService, derived from the
// generated descriptor so that it cannot drift from the proto package.
var typeURL = "type.googleapis.com/" + string((*typespb.FederatedService)(nil).ProtoReflect().Descriptor().FullName())

// unmarshal keeps unknown fields: a newer peer may add some, and the raw
// bytes (not this message) are what gets stored anyway.
var unmarshal = proto.UnmarshalOptions{}

// Response checks one StreamResponse from peer p. It returns the operation
// and, for UPSERT, the validated service; the key to file it under is
// r.GetResourceId() and the bytes to store are r.GetResource().GetValue(),
// both checked here.
//
// resource_url may be empty (not every implementation sets it on responses)
// but, when set, must be the FederatedService type URL. A DELETE needs only
// a resource_id: a resource sent along with it is ignored, not checked,
// since nothing of it is used.
//
// The operation is returned with the error too, once it has been read, so
// that a caller can tell a rejected UPSERT (the peer still has the service)
// from a rejected DELETE.
func Response(r *discoverypb.StreamResponse, p Policy) (discoverypb.StreamResponse_Operation, model.Service, error) {
	if r == nil {
		return 0, model.Service{}, invalid("response: is missing")
	}
	op := r.GetOperation()
	switch op {
	case discoverypb.StreamResponse_UPSERT, discoverypb.StreamResponse_DELETE:
	case discoverypb.StreamResponse_UNKNOWN:
		return op, model.Service{}, invalid("operation: UNKNOWN is not UPSERT or DELETE")
	default:
		return op, model.Service{}, invalid("operation: %d is not UPSERT or DELETE", int32(op))
	}
	if u := r.GetResourceUrl(); u != "" && u != typeURL {
		return op, model.Service{}, invalid("resource_url: %s is not %q", quote(u), typeURL)
	}
	l := p.Limits.withDefaults()
	switch id := r.GetResourceId(); {
	case id == "":
		return op, model.Service{}, invalid("resource_id: is empty")
	case len(id) > l.ResourceIDLen:
		return op, model.Service{}, invalid("resource_id: %s is longer than %d bytes", quote(id), l.ResourceIDLen)
	}
	if op == discoverypb.StreamResponse_DELETE {
		return op, model.Service{}, nil
	}
	res := r.GetResource()
	if res == nil {
		return op, model.Service{}, invalid("resource: is missing for UPSERT")
	}
	if res.GetTypeUrl() != typeURL {
		return op, model.Service{}, invalid("resource.type_url: %s is not %q", quote(res.GetTypeUrl()), typeURL)
	}
	var fs typespb.FederatedService
	if err := unmarshal.Unmarshal(res.GetValue(), &fs); err != nil {
		return op, model.Service{}, invalid("resource.value: is not a FederatedService: %v", err)
	}
	svc, err := Service(&fs, p)
	return op, svc, err
}
