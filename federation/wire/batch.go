package wire

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/wire/extpb"
	"github.com/meshfed/meshfed/internal/untrusted"
)

// BatchURL is the resource_url, and the resource's type URL, of a response
// that carries several services (extpb.Batch), on a stream that negotiated
// services-per-response. Derived from the descriptor, so that it cannot
// drift from the proto package.
var BatchURL = "type.googleapis.com/" + string((*extpb.Batch)(nil).ProtoReflect().Descriptor().FullName())

// batchField is extpb.Batch's responses field.
const batchField protowire.Number = 1

// Batch is one response that carries rs, each the response of one service
// as the specification has it. The caller sets its nonce and context.
func Batch(rs []*discoverypb.StreamResponse) (*discoverypb.StreamResponse, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&extpb.Batch{Responses: rs})
	if err != nil {
		return nil, err
	}
	return &discoverypb.StreamResponse{ResourceUrl: BatchURL, Resource: &anypb.Any{TypeUrl: BatchURL, Value: b}}, nil
}

// BatchEntrySize is what a response of one service adds to a batch.
func BatchEntrySize(r *discoverypb.StreamResponse) int {
	n := proto.Size(r)
	return protowire.SizeTag(batchField) + protowire.SizeBytes(n)
}

// BatchLen is how many services batch response r holds, counted without
// decoding them: a peer's message of a few MB could hold millions of
// empty ones.
func BatchLen(r *discoverypb.StreamResponse) (int, error) {
	res := r.GetResource()
	if res == nil {
		return 0, errors.New("resource: is missing for a batch")
	}
	if res.GetTypeUrl() != BatchURL {
		return 0, fmt.Errorf("resource.type_url: %s is not %q", untrusted.Quote(res.GetTypeUrl()), BatchURL)
	}
	n, err := countField(res.GetValue(), batchField)
	if err != nil {
		return 0, fmt.Errorf("resource.value: is not a batch: %v", err)
	}
	return n, nil
}

// Unbatch is the responses batch response r carries, from 1 to max of
// them, each still to be validated as any response is. They are counted
// before any is decoded.
func Unbatch(r *discoverypb.StreamResponse, max int) ([]*discoverypb.StreamResponse, error) {
	n, err := BatchLen(r)
	switch {
	case err != nil:
		return nil, err
	case n == 0:
		return nil, errors.New("resource.value: the batch holds no service")
	case n > max:
		return nil, fmt.Errorf("resource.value: the batch holds %d services, over the %d per response this stream negotiated", n, max)
	}
	var b extpb.Batch
	if err := proto.Unmarshal(r.GetResource().GetValue(), &b); err != nil {
		return nil, fmt.Errorf("resource.value: is not a batch: %v", err)
	}
	return b.GetResponses(), nil
}

// countField counts the occurrences of the message field num in the
// encoded message b.
func countField(b []byte, num protowire.Number) (int, error) {
	count := 0
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		b = b[l:]
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		b = b[l:]
		if n != num {
			continue
		}
		if typ != protowire.BytesType {
			// Decoding would keep it as an unknown field, not an entry.
			return 0, fmt.Errorf("field %d has wire type %d, not bytes", n, typ)
		}
		count++
	}
	return count, nil
}
