package validate

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/hamlet/typespb"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzResponse from fuzzSeeds")

// fuzzSeed is one input of FuzzResponse, in its argument order.
type fuzzSeed struct {
	name                        string
	op                          int32
	resourceURL, id, anyTypeURL string
	value                       []byte
}

func fuzzSeeds(t testing.TB) []fuzzSeed {
	valid := mustMarshal(t, validService())
	minimal := mustMarshal(t, &typespb.FederatedService{
		Name: "a", Fqdn: "a.b",
		Endpoints: []*typespb.FederatedService_Endpoint{{Address: "192.0.2.1", Port: 1}},
		Instances: []*typespb.FederatedService_Instance{{Protocol: "tcp"}},
	})
	dup := validService()
	dup.Instances[0].Metadata["SNI"] = "x.example"
	up := int32(discoverypb.StreamResponse_UPSERT)
	return []fuzzSeed{
		{"valid", up, typeURL, "payments", typeURL, valid},
		{"minimal", up, "", "a.b", typeURL, minimal},
		{"delete", int32(discoverypb.StreamResponse_DELETE), typeURL, "payments", "", nil},
		{"unknown-op", 0, typeURL, "payments", typeURL, valid},
		{"wrong-type", up, typeURL, "payments", "type.googleapis.com/google.protobuf.Empty", valid},
		{"truncated", up, typeURL, "payments", typeURL, valid[:len(valid)/2]},
		{"duplicate-sni", up, typeURL, "payments", typeURL, mustMarshal(t, dup)},
		{"garbage", up, typeURL, "x", typeURL, []byte("\x0a\xff\xff\xff\xff\x0f")},
	}
}

// TestWriteFuzzCorpus keeps the committed seed corpus in step with
// fuzzSeeds: go test -run TestWriteFuzzCorpus -update-corpus.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzResponse")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, s := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\nint32(%d)\nstring(%s)\nstring(%s)\nstring(%s)\n[]byte(%s)\n",
			s.op, strconv.Quote(s.resourceURL), strconv.Quote(s.id), strconv.Quote(s.anyTypeURL), strconv.Quote(string(s.value)))
		require.NoError(t, os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644))
	}
}

// FuzzResponse feeds arbitrary responses, the Any payload above all, through
// Response: it must not panic, must fail only with InvalidArgument, and
// what it accepts must come out unchanged when sent through it again.
func FuzzResponse(f *testing.F) {
	p := testPolicy()
	f.Fuzz(func(t *testing.T, op int32, resourceURL, id, anyTypeURL string, value []byte) {
		r := &discoverypb.StreamResponse{
			ResourceUrl: resourceURL,
			ResourceId:  id,
			Operation:   discoverypb.StreamResponse_Operation(op),
			Resource:    &anypb.Any{TypeUrl: anyTypeURL, Value: value},
		}
		gotOp, svc, err := Response(r, p)
		if err != nil {
			if c := status.Code(err); c != codes.InvalidArgument {
				t.Fatalf("code %v, want InvalidArgument: %v", c, err)
			}
			return
		}
		if gotOp != discoverypb.StreamResponse_UPSERT {
			return
		}
		again := upsert(t, toProto(svc))
		again.ResourceId = id
		_, svc2, err := Response(again, p)
		if err != nil {
			t.Fatalf("accepted service does not validate again: %v\n%+v", err, svc)
		}
		if d := cmp.Diff(svc, svc2); d != "" {
			t.Fatalf("second pass changed the service (-first +second):\n%s", d)
		}
	})
}
