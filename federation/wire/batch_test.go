package wire_test

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/wire"
	"github.com/meshfed/meshfed/model"
)

func entries(t *testing.T) []*discoverypb.StreamResponse {
	t.Helper()
	b, err := proto.Marshal(wire.FromModel(model.Service{Name: "payments", FQDN: "payments.mesh-b.example"}))
	require.NoError(t, err)
	return []*discoverypb.StreamResponse{
		{ResourceUrl: wire.TypeURL, ResourceId: "payments", Operation: discoverypb.StreamResponse_UPSERT,
			Resource: &anypb.Any{TypeUrl: wire.TypeURL, Value: b}},
		{ResourceUrl: wire.TypeURL, ResourceId: "ledger", Operation: discoverypb.StreamResponse_DELETE},
	}
}

// A batch carries its services as they are, in order, and says how large
// each makes it.
func TestBatchRoundTrip(t *testing.T) {
	es := entries(t)
	r, err := wire.Batch(es)
	require.NoError(t, err)
	require.Equal(t, "type.googleapis.com/meshfed.hamlet.v1.Batch", r.GetResourceUrl())
	require.Equal(t, wire.BatchURL, r.GetResource().GetTypeUrl())
	n, err := wire.BatchLen(r)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, wire.BatchEntrySize(es[0])+wire.BatchEntrySize(es[1]), len(r.GetResource().GetValue()))
	got, err := wire.Unbatch(r, 2)
	require.NoError(t, err)
	if d := cmp.Diff(es, got, protocmp.Transform()); d != "" {
		t.Fatalf("entries (-want +got):\n%s", d)
	}
}

// What a peer sends is counted before it is decoded, and refused whole
// when it is no batch this side can take.
func TestUnbatchRefuses(t *testing.T) {
	two, err := wire.Batch(entries(t))
	require.NoError(t, err)
	// A few bytes that hold a million empty entries.
	empties := &discoverypb.StreamResponse{ResourceUrl: wire.BatchURL,
		Resource: &anypb.Any{TypeUrl: wire.BatchURL, Value: bytes.Repeat([]byte{0x0a, 0x00}, 1<<20)}}
	for _, tc := range []struct {
		name string
		r    *discoverypb.StreamResponse
		max  int
		want string
	}{
		{"more than the most", two, 1, "resource.value: the batch holds 2 services, over the 1 per response this stream negotiated"},
		{"a million empty entries", empties, 256, "resource.value: the batch holds 1048576 services, over the 256"},
		{"no resource", &discoverypb.StreamResponse{ResourceUrl: wire.BatchURL}, 2, "resource: is missing for a batch"},
		{"no entry", &discoverypb.StreamResponse{ResourceUrl: wire.BatchURL, Resource: &anypb.Any{TypeUrl: wire.BatchURL}}, 2,
			"resource.value: the batch holds no service"},
		{"another type", &discoverypb.StreamResponse{ResourceUrl: wire.BatchURL, Resource: &anypb.Any{TypeUrl: "x\ny"}}, 2,
			`resource.type_url: "x"... (3 bytes) is not "type.googleapis.com/meshfed.hamlet.v1.Batch"`},
		{"truncated", &discoverypb.StreamResponse{ResourceUrl: wire.BatchURL, Resource: &anypb.Any{TypeUrl: wire.BatchURL, Value: []byte{0x0a, 0x05, 0x01}}}, 2,
			"resource.value: is not a batch"},
		{"an entry of another wire type", &discoverypb.StreamResponse{ResourceUrl: wire.BatchURL, Resource: &anypb.Any{TypeUrl: wire.BatchURL, Value: []byte{0x08, 0x01}}}, 2,
			"resource.value: is not a batch: field 1 has wire type 0, not bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.Unbatch(tc.r, tc.max)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
