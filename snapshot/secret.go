package snapshot

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshfed/meshfed/model"
)

// spiffeValidator is the name of Envoy's SPIFFE certificate validator.
const spiffeValidator = "envoy.tls.cert_validator.spiffe"

// Certificates reach the gateways only through SDS secrets, whose names
// never change (names.go): a rotation replaces secret contents and nothing
// else, so Envoy swaps certificates without touching, or draining, any
// listener or cluster.

func inline(s string) *core.DataSource {
	return &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: s}}
}

// sdsSecret refers to a secret that Envoy waits for however long it takes
// (initial_fetch_timeout 0, as Istio's proxies do): past the default 15 s a
// cluster or listener would start without its certificate and fail every
// handshake, and a cold start of thousands of clusters on a loaded host
// took that long (8 init_fetch_timeout over 4 Envoys at 10,000 imports).
func sdsSecret(name string) *tls.SdsSecretConfig {
	src := ads()
	src.InitialFetchTimeout = durationpb.New(0)
	return &tls.SdsSecretConfig{Name: name, SdsConfig: src}
}

// svidSecret is role's certificate and key; nil while Secrets has none.
func svidSecret(in *view, role model.Role) *tls.Secret {
	svid, ok := in.Secrets.SVIDs[role]
	if !ok {
		return nil
	}
	return &tls.Secret{
		Name: SVIDSecretName(role),
		Type: &tls.Secret_TlsCertificate{TlsCertificate: &tls.TlsCertificate{
			CertificateChain: inline(svid.CertChain),
			PrivateKey:       inline(svid.PrivateKey),
		}},
	}
}

// bundleSecret is the validation context of trustDomain for upstream TLS;
// nil while Secrets has no bundle for it.
func bundleSecret(in *view, trustDomain string) *tls.Secret {
	pem, ok := in.Secrets.Bundles[trustDomain]
	if !ok {
		return nil
	}
	return &tls.Secret{
		Name: BundleSecretName(trustDomain),
		Type: &tls.Secret_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
			TrustedCa: inline(pem),
		}},
	}
}

// validatorSecret is the downstream validation context accepting SVIDs of
// trustDomains (sorted, unique) with the SPIFFE certificate validator: each
// trust domain is checked against its own bundle only, so no peer can mint
// an identity of another. Envoy accepts a custom validator in an SDS
// validation context (SPIRE's SDS serves exactly this), which keeps bundles
// out of listeners. A trust domain without a bundle in Secrets is left out
// (its callers are refused); nil when none is left, and Check then reports
// the dangling reference.
func validatorSecret(in *view, trustDomains []string) *tls.Secret {
	cfg := &tls.SPIFFECertValidatorConfig{}
	for _, td := range trustDomains {
		if pem, ok := in.Secrets.Bundles[td]; ok {
			cfg.TrustDomains = append(cfg.TrustDomains, &tls.SPIFFECertValidatorConfig_TrustDomain{
				Name:        td,
				TrustBundle: inline(pem),
			})
		}
	}
	if len(cfg.TrustDomains) == 0 {
		return nil
	}
	return &tls.Secret{
		Name: ValidatorSecretName(trustDomains),
		Type: &tls.Secret_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
			CustomValidatorConfig: &core.TypedExtensionConfig{Name: spiffeValidator, TypedConfig: mustAny(cfg)},
		}},
	}
}

// istioALPN is what an Istio sidecar offers in its mutual TLS: an Istio
// gateway in PERMISSIVE mode looks for it to tell mTLS from plain TCP.
var istioALPN = []string{"istio-peer-exchange", "istio"}

// upstreamTLS originates mutual TLS to an owner's ingress: the egress SVID
// as client certificate, the owner's trust bundle as roots and the
// service's sans as exact URI SAN matchers; with no sans, any SVID of the
// owner's trust domain, and none of another that the same bundle might
// have signed. TLS 1.2 at least; Istio's ALPN when the owner asks for it.
// The SNI, as the owner advertised it for an instance, is the filter
// state's (upstream.go): without it, Envoy sends none and the owner's
// ingress refuses the connection.
func upstreamTLS(owner model.Peer, sans []string) *core.TransportSocket {
	trustDomain := owner.TrustDomain
	dvc := &tls.CertificateValidationContext{}
	for _, san := range sans {
		dvc.MatchTypedSubjectAltNames = append(dvc.MatchTypedSubjectAltNames, uriSAN(san, false))
	}
	if len(sans) == 0 {
		dvc.MatchTypedSubjectAltNames = []*tls.SubjectAltNameMatcher{uriSAN(trustDomainPrefix(trustDomain), true)}
	}
	ctx := &tls.UpstreamTlsContext{
		CommonTlsContext: &tls.CommonTlsContext{
			TlsParams:                      tlsParams(),
			TlsCertificateSdsSecretConfigs: []*tls.SdsSecretConfig{sdsSecret(SVIDSecretName(model.Egress))},
			AlpnProtocols:                  alpn(owner),
			ValidationContextType: &tls.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tls.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         dvc,
					ValidationContextSdsSecretConfig: sdsSecret(BundleSecretName(trustDomain)),
				},
			},
		},
	}
	return &core.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}

// downstreamTLS terminates a consumer's mutual TLS: the ingress SVID, and a
// client certificate required, checked by the named validator secret (the
// SPIFFE validator: each trust domain against its own bundle) and
// authorized during the handshake by the SAN matchers of the callers: a
// caller that is not one of them fails the handshake, before any byte of
// its reaches the exported service. TLS 1.2 at least.
func downstreamTLS(validator string, callers []*tls.SubjectAltNameMatcher) *core.TransportSocket {
	ctx := &tls.DownstreamTlsContext{
		RequireClientCertificate: wrapBool(true),
		CommonTlsContext: &tls.CommonTlsContext{
			TlsParams:                      tlsParams(),
			TlsCertificateSdsSecretConfigs: []*tls.SdsSecretConfig{sdsSecret(SVIDSecretName(model.Ingress))},
			ValidationContextType: &tls.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tls.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tls.CertificateValidationContext{MatchTypedSubjectAltNames: callers},
					ValidationContextSdsSecretConfig: sdsSecret(validator),
				},
			},
		},
	}
	return &core.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}

// tlsParams are the TLS versions of both gateways: 1.2 and 1.3. Envoy's
// default for a client is 1.2 only.
func tlsParams() *tls.TlsParameters {
	return &tls.TlsParameters{
		TlsMinimumProtocolVersion: tls.TlsParameters_TLSv1_2,
		TlsMaximumProtocolVersion: tls.TlsParameters_TLSv1_3,
	}
}

// uriSAN matches a URI SAN exactly, or by prefix.
func uriSAN(value string, prefix bool) *tls.SubjectAltNameMatcher {
	m := &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: value}}
	if prefix {
		m.MatchPattern = &matcher.StringMatcher_Prefix{Prefix: value}
	}
	return &tls.SubjectAltNameMatcher{SanType: tls.SubjectAltNameMatcher_URI, Matcher: m}
}

// trustDomainPrefix is what every SPIFFE ID of trustDomain starts with.
func trustDomainPrefix(trustDomain string) string { return "spiffe://" + trustDomain + "/" }

func alpn(owner model.Peer) []string {
	if owner.IstioALPN {
		return istioALPN
	}
	return nil
}
