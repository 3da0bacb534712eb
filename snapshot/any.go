package snapshot

import (
	"fmt"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// mustAny wraps m in an Any, marshaled deterministically: the bytes of a
// resource are its version, and a map in a typed config (a JSON access log
// format, say) would otherwise give the same resource other bytes in the
// next process, and every gateway an update after each restart.
// Marshaling fails only for a string field that is not UTF-8, which the
// model cannot hold (it is decoded from protobuf, JSON or YAML), so a
// failure is a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true})
	if err != nil {
		panic(fmt.Sprintf("snapshot: marshal %T: %v", m, err))
	}
	return a
}

// ads is the config source of every dynamic resource: the ADS stream the
// gateway already has.
func ads() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}

func socketAddress(address string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       address,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}
