package validate

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshfed/meshfed/federation/hamlet/discoverypb"
	"github.com/meshfed/meshfed/federation/hamlet/typespb"
	"github.com/meshfed/meshfed/model"
)

func TestServiceValid(t *testing.T) {
	got, err := Service(validService(), testPolicy())
	require.NoError(t, err)
	if d := cmp.Diff(wantService(), got); d != "" {
		t.Fatalf("service (-want +got):\n%s", d)
	}
}

func TestResponseValid(t *testing.T) {
	r := upsert(t, validService())
	op, got, err := Response(r, testPolicy())
	require.NoError(t, err)
	require.Equal(t, discoverypb.StreamResponse_UPSERT, op)
	if d := cmp.Diff(wantService(), got); d != "" {
		t.Fatalf("service (-want +got):\n%s", d)
	}

	// Not every implementation sets resource_url on responses.
	r.ResourceUrl = ""
	_, _, err = Response(r, testPolicy())
	require.NoError(t, err)

	// A DELETE needs only its id; a resource sent with it is not looked at.
	for _, res := range []*anypb.Any{nil, {TypeUrl: "junk", Value: []byte{0xff}}} {
		op, got, err = Response(&discoverypb.StreamResponse{ResourceId: "payments", Operation: discoverypb.StreamResponse_DELETE, Resource: res}, testPolicy())
		require.NoError(t, err)
		require.Equal(t, discoverypb.StreamResponse_DELETE, op)
		require.Equal(t, model.Service{}, got)
	}
}

func TestServiceIdempotent(t *testing.T) {
	first, err := Service(validService(), testPolicy())
	require.NoError(t, err)
	second, err := Service(toProto(first), testPolicy())
	require.NoError(t, err)
	if d := cmp.Diff(first, second); d != "" {
		t.Fatalf("second pass changed the service (-first +second):\n%s", d)
	}
}

func TestLimitsOverrideOne(t *testing.T) {
	p := testPolicy()
	p.Limits = Limits{Endpoints: 2}
	_, err := Service(validService(), p)
	require.ErrorContains(t, err, "endpoints: 4 entries exceed the limit of 2")
	// The other limits keep their defaults.
	fs := validService()
	fs.Endpoints = fs.Endpoints[:2]
	_, err = Service(fs, p)
	require.NoError(t, err)
}

func TestInvalid(t *testing.T) {
	long := strings.Repeat("a", 300)
	type mutate func(fs *typespb.FederatedService)
	svc := []struct {
		name string
		mut  mutate
		want string
	}{
		{"empty name", func(fs *typespb.FederatedService) { fs.Name = "" }, "name: is empty"},
		{"long name", func(fs *typespb.FederatedService) { fs.Name = long }, `name: "` + long[:64] + `"... (300 bytes) is longer than 253 bytes`},
		{"control in name", func(fs *typespb.FederatedService) { fs.Name = "pay\nments" }, `name: "pay\nments" contains a control character`},
		{"upper fqdn that stays invalid", func(fs *typespb.FederatedService) { fs.Fqdn = "PAY_MENTS.Example" }, `fqdn: "PAY_MENTS.Example" is not a DNS name (contains a character other than a letter, digit, '-' or '.')`},
		{"empty fqdn", func(fs *typespb.FederatedService) { fs.Fqdn = "" }, `fqdn: "" is not a DNS name (empty)`},
		{"single label fqdn", func(fs *typespb.FederatedService) { fs.Fqdn = "payments" }, `fqdn: "payments" is not a DNS name (has fewer than two labels)`},
		{"wildcard fqdn", func(fs *typespb.FederatedService) { fs.Fqdn = "*.mesh-b.example" }, `fqdn: "*.mesh-b.example" is not a DNS name (contains a wildcard)`},
		{"fqdn long label", func(fs *typespb.FederatedService) { fs.Fqdn = strings.Repeat("a", 64) + ".example" }, "(has a label longer than 63 bytes)"},
		{"fqdn too long", func(fs *typespb.FederatedService) { fs.Fqdn = strings.Repeat("abc.", 64) + "example" }, "(longer than 253 bytes)"},
		{"fqdn hyphen", func(fs *typespb.FederatedService) { fs.Fqdn = "-pay.example" }, `fqdn: "-pay.example" is not a DNS name (has a label that starts or ends with '-')`},
		{"fqdn empty label", func(fs *typespb.FederatedService) { fs.Fqdn = "pay..example" }, "(has an empty label)"},
		{"fqdn trailing dot", func(fs *typespb.FederatedService) { fs.Fqdn = "pay.example." }, "(ends with a dot)"},
		{"fqdn is an ip", func(fs *typespb.FederatedService) { fs.Fqdn = "10.0.0.1" }, `fqdn: "10.0.0.1" is not a DNS name (has an all-numeric top-level label)`},
		{"fqdn underscore", func(fs *typespb.FederatedService) { fs.Fqdn = "pay_ments.example" }, "(contains a character other than"},
		{"long description", func(fs *typespb.FederatedService) { fs.Description = strings.Repeat("d", 1025) }, "description: \"dddd"},
		{"too many tags", func(fs *typespb.FederatedService) { fs.Tags = make([]string, 65) }, "tags: 65 entries exceed the limit of 64"},
		{"long tag", func(fs *typespb.FederatedService) { fs.Tags[1] = long }, "tags[1]: \"aaa"},
		{"long label key", func(fs *typespb.FederatedService) { fs.Labels[long] = "v" }, "labels: key \"aaa"},
		{"long label value", func(fs *typespb.FederatedService) { fs.Labels["team"] = strings.Repeat("v", 1025) }, `labels["team"]: "vvvv`},
		{"no endpoints", func(fs *typespb.FederatedService) { fs.Endpoints = nil }, "endpoints: none given"},
		{"nil endpoint", func(fs *typespb.FederatedService) { fs.Endpoints[1] = nil }, `endpoints[1].address: "" is neither an IP address nor a DNS name (empty)`},
		{"port too big", func(fs *typespb.FederatedService) { fs.Endpoints[1].Port = 70000 }, "endpoints[1].port: 70000 is out of range 1-65535"},
		{"port zero", func(fs *typespb.FederatedService) { fs.Endpoints[0].Port = 0 }, "endpoints[0].port: 0 is out of range 1-65535"},
		{"bad address", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "ingress gw" }, `endpoints[0].address: "ingress gw" is neither an IP address nor a DNS name`},
		{"numeric address", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "10.0.0.256" }, `endpoints[0].address: "10.0.0.256" is neither an IP address nor a DNS name (has an all-numeric top-level label)`},
		{"loopback", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "127.0.0.2" }, `endpoints[0].address: "127.0.0.2" is loopback`},
		{"mapped loopback", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "::ffff:127.0.0.1" }, `endpoints[0].address: "::ffff:127.0.0.1" is loopback`},
		{"v6 loopback", func(fs *typespb.FederatedService) { fs.Endpoints[2].Address = "::1" }, `endpoints[2].address: "::1" is loopback`},
		{"localhost name", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "a.LOCALHOST" }, `endpoints[0].address: "a.LOCALHOST" is a loopback name`},
		{"link-local", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "169.254.169.254" }, "is link-local"},
		{"v6 link-local with zone", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "fe80::1%eth0" }, "has an IPv6 zone"},
		{"unspecified", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "0.0.0.0" }, "is unspecified"},
		{"this network", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "0.1.2.3" }, "is unspecified"},
		{"multicast", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "ff02::1" }, "is multicast"},
		{"broadcast", func(fs *typespb.FederatedService) { fs.Endpoints[0].Address = "255.255.255.255" }, "is the broadcast address"},
		{"denied cidr", func(fs *typespb.FederatedService) { fs.Endpoints[3].Address = "10.100.0.1" }, `endpoints[3].address: "10.100.0.1" is in denied range 10.96.0.0/12`},
		{"denied cidr mapped", func(fs *typespb.FederatedService) { fs.Endpoints[3].Address = "::ffff:10.100.0.1" }, `endpoints[3].address: "::ffff:10.100.0.1" is in denied range 10.96.0.0/12`},
		{"denied v6 cidr", func(fs *typespb.FederatedService) { fs.Endpoints[3].Address = "fd00:dead::5" }, "is in denied range fd00:dead::/32"},
		{"too many endpoint labels", func(fs *typespb.FederatedService) { fs.Endpoints[0].Labels = make([]string, 33) }, "endpoints[0].labels: 33 entries exceed the limit of 32"},
		{"long endpoint description", func(fs *typespb.FederatedService) { fs.Endpoints[2].Description = strings.Repeat("x", 2000) }, "endpoints[2].description:"},
		{"san not spiffe", func(fs *typespb.FederatedService) { fs.Sans[0] = "https://mesh-b.example/x" }, `sans[0]: "https://mesh-b.example/x" is not a SPIFFE ID`},
		{"san upper trust domain", func(fs *typespb.FederatedService) { fs.Sans[0] = "spiffe://Mesh-B.example/x" }, `sans[0]: "spiffe://Mesh-B.example/x" is not a SPIFFE ID`},
		{"san foreign trust domain", func(fs *typespb.FederatedService) { fs.Sans[1] = "spiffe://mesh-a.example/ns/default/sa/admin" }, `sans[1]: "spiffe://mesh-a.example/ns/default/sa/admin" is in trust domain "mesh-a.example", which this peer may not name`},
		{"too many sans", func(fs *typespb.FederatedService) { fs.Sans = make([]string, 33) }, "sans: 33 entries exceed the limit of 32"},
		{"no instances", func(fs *typespb.FederatedService) { fs.Instances = nil }, "instances: none given"},
		{"too many instances", func(fs *typespb.FederatedService) { fs.Instances = make([]*typespb.FederatedService_Instance, 65) }, "instances: 65 entries exceed the limit of 64"},
		{"bad protocol", func(fs *typespb.FederatedService) { fs.Instances[2].Protocol = "UDP" }, `instances[2].protocol: "UDP" is not one of HTTP HTTPS GRPC HTTP2 MONGO TCP TLS MTLS`},
		{"empty protocol", func(fs *typespb.FederatedService) { fs.Instances[0].Protocol = "" }, `instances[0].protocol: "" is not one of`},
		{"duplicate instance id", func(fs *typespb.FederatedService) { fs.Instances[2].Id = "http" }, `instances[2].id: "http" is also the id of instances[0]`},
		{"sni wildcard", func(fs *typespb.FederatedService) { fs.Instances[0].Metadata["sni"] = "*.mesh-b.example" }, `instances[0].metadata["sni"]: "*.mesh-b.example" is not a valid SNI host name (contains a wildcard)`},
		{"sni empty", func(fs *typespb.FederatedService) { fs.Instances[0].Metadata["sni"] = "" }, `instances[0].metadata["sni"]: "" is not a valid SNI host name (empty)`},
		{"sni ip", func(fs *typespb.FederatedService) { fs.Instances[0].Metadata["sni"] = "10.1.2.3" }, "(has an all-numeric top-level label)"},
		{"sni twice", func(fs *typespb.FederatedService) { fs.Instances[0].Metadata["SNI"] = "a.example" }, `instances[0].metadata: keys "SNI" and "sni" both name SNI`},
		{"hostname twice", func(fs *typespb.FederatedService) {
			fs.Instances[1].Metadata["hostname"] = "a.example"
			fs.Instances[1].Metadata["HostName"] = "b.example"
		}, `instances[1].metadata: keys "HOSTNAME" and "HostName" both name HOSTNAME`},
		{"hostname invalid", func(fs *typespb.FederatedService) { fs.Instances[1].Metadata["HOSTNAME"] = "pay_ments.example" }, `instances[1].metadata["HOSTNAME"]: "pay_ments.example" is not a DNS name`},
		{"port not a number", func(fs *typespb.FederatedService) { fs.Instances[0].Metadata["Port"] = "http" }, `instances[0].metadata["Port"]: "http" is not a port number 1-65535`},
		{"port zero meta", func(fs *typespb.FederatedService) { fs.Instances[0].Metadata["Port"] = "0" }, `instances[0].metadata["Port"]: "0" is not a port number 1-65535`},
		{"port too big meta", func(fs *typespb.FederatedService) { fs.Instances[0].Metadata["Port"] = "65536" }, `"65536" is not a port number 1-65535`},
		{"default sni too long", func(fs *typespb.FederatedService) {
			fs.Fqdn = strings.Repeat("abcdefghij.", 21) + "mesh-b.example" // 245 bytes
		}, `instances[1]: no SNI metadata, and the default "outbound_.0_._.abcdefghij.abcdefghij.abc..." is 260 bytes, over the 255 a TLS server name may have: state a shorter SNI`},
		{"port signed", func(fs *typespb.FederatedService) { fs.Instances[0].Metadata["Port"] = "+80" }, `"+80" is not a port number 1-65535`},
		{"too much metadata", func(fs *typespb.FederatedService) {
			fs.Instances[2].Metadata = map[string]string{}
			for _, k := range strings.Split("a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6", " ") {
				fs.Instances[2].Metadata[k] = ""
			}
		}, "instances[2].metadata: 33 entries exceed the limit of 32"},
		{"long metadata value", func(fs *typespb.FederatedService) { fs.Instances[0].Metadata["owner"] = strings.Repeat("o", 1025) }, `instances[0].metadata["owner"]: "oooo`},
		{"too wide selector", func(fs *typespb.FederatedService) { fs.Instances[1].EndpointSelector = make([]string, 33) }, "instances[1].endpoint_selector: 33 entries exceed the limit of 32"},
		{"long selector", func(fs *typespb.FederatedService) { fs.Instances[1].EndpointSelector = []string{long} }, "instances[1].endpoint_selector[0]: \"aaa"},
		{"long instance id", func(fs *typespb.FederatedService) { fs.Instances[1].Id = long }, "instances[1].id: \"aaa"},
	}
	for _, tc := range svc {
		t.Run(tc.name, func(t *testing.T) {
			fs := validService()
			tc.mut(fs)
			_, err := Service(fs, testPolicy())
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			require.ErrorContains(t, err, tc.want)
			// The same check through a whole response gives the same error.
			_, _, err2 := Response(upsert(t, fs), testPolicy())
			require.Equal(t, codes.InvalidArgument, status.Code(err2))
			require.Equal(t, err.Error(), err2.Error())
		})
	}
}

func TestInvalidResponse(t *testing.T) {
	valid := func() *discoverypb.StreamResponse { return upsert(t, validService()) }
	cases := []struct {
		name string
		r    *discoverypb.StreamResponse
		want string
	}{
		{"nil", nil, "response: is missing"},
		{"unknown op", func() *discoverypb.StreamResponse {
			r := valid()
			r.Operation = discoverypb.StreamResponse_UNKNOWN
			return r
		}(), "operation: UNKNOWN is not UPSERT or DELETE"},
		{"undefined op", func() *discoverypb.StreamResponse { r := valid(); r.Operation = 7; return r }(), "operation: 7 is not UPSERT or DELETE"},
		{"empty id", func() *discoverypb.StreamResponse { r := valid(); r.ResourceId = ""; return r }(), "resource_id: is empty"},
		{"delete without id", &discoverypb.StreamResponse{Operation: discoverypb.StreamResponse_DELETE}, "resource_id: is empty"},
		{"long id", func() *discoverypb.StreamResponse { r := valid(); r.ResourceId = strings.Repeat("i", 513); return r }(), "resource_id: \"iii"},
		{"wrong resource_url", func() *discoverypb.StreamResponse {
			r := valid()
			r.ResourceUrl = "type.googleapis.com/other.Thing"
			return r
		}(), `resource_url: "type.googleapis.com/other.Thing" is not "type.googleapis.com/federation.types.v1alpha2.FederatedService"`},
		{"no resource", func() *discoverypb.StreamResponse { r := valid(); r.Resource = nil; return r }(), "resource: is missing for UPSERT"},
		{"wrong type url", func() *discoverypb.StreamResponse {
			r := valid()
			r.Resource.TypeUrl = "type.googleapis.com/federation.types.v1alpha1.FederatedService"
			return r
		}(), `resource.type_url: "type.googleapis.com/federation.types.v1alpha1.FederatedService" is not`},
		{"garbage bytes", func() *discoverypb.StreamResponse { r := valid(); r.Resource.Value = []byte{0x0a, 0xff}; return r }(), "resource.value: is not a FederatedService"},
		{"invalid utf-8", func() *discoverypb.StreamResponse {
			r := valid()
			r.Resource.Value = []byte{0x0a, 0x01, 0xff}
			return r
		}(), "resource.value: is not a FederatedService"},
		{"empty bytes", func() *discoverypb.StreamResponse { r := valid(); r.Resource.Value = nil; return r }(), "name: is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, svc, err := Response(tc.r, testPolicy())
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, model.Service{}, svc)
		})
	}
}

func TestNoTrustDomainAdmitsNoSAN(t *testing.T) {
	_, err := Service(validService(), Policy{})
	require.ErrorContains(t, err, `sans[0]: "spiffe://mesh-b.example/ns/istio-system/sa/ingress" is in trust domain "mesh-b.example", which this peer may not name`)
}

// Map order is random; the message for a map with several bad entries must
// not be.
func TestDeterministicMessages(t *testing.T) {
	fs := validService()
	fs.Labels = map[string]string{}
	for _, k := range []string{"k", "b", "z", "a", "q"} {
		fs.Labels[k] = strings.Repeat("v", 2000)
	}
	fs.Instances[0].Metadata = map[string]string{"SNI": "*", "PORT": "x", "HOSTNAME": "-"}
	for range 20 {
		_, err := Service(fs, testPolicy())
		require.ErrorContains(t, err, `labels["a"]:`)
	}
	fs.Labels = nil
	for range 20 {
		_, err := Service(fs, testPolicy())
		require.ErrorContains(t, err, `instances[0].metadata["HOSTNAME"]: "-"`)
	}
}

func TestDNSName(t *testing.T) {
	require.NoError(t, DNSName("alias", "payments.mesh-b.local"))
	err := DNSName("alias", "payments")
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.ErrorContains(t, err, `alias: "payments" is not a lowercase DNS name (has fewer than two labels)`)
}

func TestQuoteCutsAtRuneBoundary(t *testing.T) {
	s := strings.Repeat("a", 63) + "é" + strings.Repeat("b", 10)
	require.Equal(t, `"`+strings.Repeat("a", 63)+`"... (75 bytes)`, quote(s))
}

func BenchmarkService(b *testing.B) {
	fs, p := validService(), testPolicy()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Service(fs, p); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAllowLoopback(t *testing.T) {
	p := testPolicy()
	p.AllowLoopback = true
	for _, addr := range []string{"127.0.0.1", "::1", "db.localhost"} {
		fs := validService()
		fs.Endpoints[0].Address = addr
		_, err := Service(fs, p)
		require.NoError(t, err, addr)
	}
	// The other ranges stay denied.
	fs := validService()
	fs.Endpoints[0].Address = "169.254.0.1"
	_, err := Service(fs, p)
	require.ErrorContains(t, err, `endpoints[0].address: "169.254.0.1" is link-local`)
}

// DNS names and SNI are case-insensitive, and some publishers use upper
// case: they are lower-cased on receipt, not refused.
func TestUpperCaseNamesAreLowerCased(t *testing.T) {
	fs := validService()
	fs.Fqdn = "Payments.MESH-B.example"
	fs.Instances[0].Metadata["sni"] = "Outbound_.8080_._.Payments.MESH-B.example"
	got, err := Service(fs, testPolicy())
	require.NoError(t, err)
	require.Equal(t, "payments.mesh-b.example", got.FQDN)
	require.Equal(t, "outbound_.8080_._.payments.mesh-b.example", got.Instances[0].SNI)
	require.Equal(t, "Payments.MESH-B.example", fs.GetFqdn(), "the input is not changed")
}

// Only ASCII letters are folded: a non-ASCII rune that strings.ToLower
// would turn into an ASCII letter stays and is refused.
func TestLowerCasingFoldsOnlyASCII(t *testing.T) {
	fs := validService()
	fs.Fqdn = "\u212Aey.mesh-b.example" // KELVIN SIGN, ToLower gives 'k'
	_, err := Service(fs, testPolicy())
	require.ErrorContains(t, err, "fqdn: \"\u212Aey.mesh-b.example\" is not a DNS name (contains a character other than a letter, digit, '-' or '.')")
}
