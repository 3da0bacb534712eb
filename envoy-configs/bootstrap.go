package envoyconfigs

import (
	"errors"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// The typed configs a gateway bootstrap may hold in an Any. protojson
	// resolves an Any's @type through the global registry, so a type whose
	// package is not linked in fails to decode.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/bootstrap/internal_listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// ParseBootstrap decodes an Envoy v3 bootstrap written in YAML, strictly: a
// field unknown to the v3 API is an error, as it is for Envoy. It then checks
// the bootstrap against the API's validation rules, including every typed
// config inside an Any, and checks that the cluster ADS uses is defined in
// static_resources, which Envoy requires.
func ParseBootstrap(yamlBytes []byte) (*bootstrapv3.Bootstrap, error) {
	// Strict: a key written twice is an error (a YAML parser keeps one of
	// them silently, and so does Envoy).
	js, err := yaml.YAMLToJSONStrict(yamlBytes)
	if err != nil {
		return nil, fmt.Errorf("bootstrap YAML: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("decoding bootstrap: %w", err)
	}
	if err := validate(b.ProtoReflect()); err != nil {
		return nil, fmt.Errorf("invalid bootstrap: %w", err)
	}
	if err := checkADSCluster(b); err != nil {
		return nil, fmt.Errorf("invalid bootstrap: %w", err)
	}
	return b, nil
}

type allValidator interface{ ValidateAll() error }

// validate runs the generated ValidateAll of m, then of the message packed in
// every Any below m: the generated code does not look inside an Any.
func validate(m protoreflect.Message) error {
	if v, ok := m.Interface().(allValidator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return validateAnys(m)
}

func validateAnys(m protoreflect.Message) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		if err := validate(inner.ProtoReflect()); err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		return nil
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = validateAnys(mv.Message())
				return err == nil
			})
		case fd.Message() == nil:
		case fd.IsList():
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = validateAnys(v.List().Get(i).Message())
			}
		default:
			err = validateAnys(v.Message())
		}
		return err == nil
	})
	return err
}

// checkADSCluster checks that every Envoy gRPC cluster ads_config names is a
// static cluster: Envoy needs it before it can fetch anything.
func checkADSCluster(b *bootstrapv3.Bootstrap) error {
	ads := b.GetDynamicResources().GetAdsConfig()
	if ads == nil {
		return nil
	}
	static := make(map[string]bool)
	for _, c := range b.GetStaticResources().GetClusters() {
		static[c.GetName()] = true
	}
	var errs []error
	for _, g := range ads.GetGrpcServices() {
		name := g.GetEnvoyGrpc().GetClusterName()
		if g.GetEnvoyGrpc() != nil && !static[name] {
			errs = append(errs, fmt.Errorf("ads_config uses cluster %q, which is not in static_resources.clusters", name))
		}
	}
	return errors.Join(errs...)
}
