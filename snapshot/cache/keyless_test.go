package cache

import (
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
)

func svidSecret(name string) Change {
	return Change{TypeURL: resource.SecretType, Name: name, Resource: &tls.Secret{Name: name, Type: &tls.Secret_TlsCertificate{TlsCertificate: &tls.TlsCertificate{
		CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: "CERT"}},
		PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: "KEY"}},
	}}}}
}

func bundleSecret(name string) Change {
	return Change{TypeURL: resource.SecretType, Name: name, Resource: &tls.Secret{Name: name, Type: &tls.Secret_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
		TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: "CA"}},
	}}}}
}

// A keyless stream sees every secret but those with a private key, by
// wildcard or by name, in both protocols, and the full view sees them all.
func TestKeylessViewHasNoPrivateKeys(t *testing.T) {
	c := newTestCache(t)
	require.NoError(t, c.Apply(model.Egress, []Change{svidSecret("svid"), bundleSecret("bundle")}))

	d := newDeltaStream(t, c.Keyless(), "egress-1")
	d.subscribe(resource.SecretType)
	require.Equal(t, []string{"bundle"}, names(d.nextAck().Resources))
	d.request(newDeltaRequest(resource.SecretType, "svid"))
	d.none()

	s := newSotwStream(t, c.Keyless(), "egress-1")
	s.request(resource.SecretType, "")
	require.Len(t, s.next().Resources, 1)
	s.request(resource.SecretType, "", "svid", "bundle")
	require.Len(t, s.next().Resources, 1)

	// A rotation is no news to a keyless stream.
	require.NoError(t, c.Apply(model.Egress, []Change{svidSecret("svid2")}))
	d.none()

	full := newDeltaStream(t, c, "egress-1")
	full.subscribe(resource.SecretType)
	require.Equal(t, []string{"bundle", "svid", "svid2"}, names(full.nextAck().Resources))
}

func newDeltaRequest(typeURL string, subscribe ...string) *discovery.DeltaDiscoveryRequest {
	return &discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: subscribe, ResponseNonce: "n"}
}
