package xds

import (
	"context"
	"errors"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/snapshot"
)

// The egress asks, per Connect caller, whether Consul lets it reach the
// service its chain names; only an answer that says so lets it through,
// and the service, the caller's SPIFFE ID and its serial are what Consul is
// asked about.
func TestConnectAuthorization(t *testing.T) {
	ca, err := certs.NewTestCA(spiffeid.RequireTrustDomainFromString("1111.consul"))
	require.NoError(t, err)
	chain, _, err := ca.Issue(spiffeid.RequireFromPath(ca.TrustDomain(), "/ns/default/dc/dc1/svc/bar"), time.Hour, certs.WithSerial(0x0102ab))
	require.NoError(t, err)
	caller := "spiffe://1111.consul/ns/default/dc/dc1/svc/bar"

	type asked struct{ target, uri, serial string }
	var got []asked
	answer := func(ok bool, err error) ConnectAuthorizer {
		return func(_ context.Context, target, uri, serial string) (bool, string, error) {
			got = append(got, asked{target, uri, serial})
			return ok, "Matched intention: DENY default/bar => default/db", err
		}
	}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	core, logs := observer.New(zap.WarnLevel)
	req := func(target, principal string) (context.Context, *authv3.CheckRequest) {
		ctx := context.Background()
		if target != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(snapshot.ConnectAuthzTarget, target))
		}
		return ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{
			Principal: principal, Certificate: string(chain), Address: &corev3.Address{},
		}}}
	}
	check := func(a ConnectAuthorizer, target, principal string) *authv3.CheckResponse {
		t.Helper()
		ctx, r := req(target, principal)
		res, err := newConnectAuthz(a, m, zap.New(core)).Check(ctx, r)
		require.NoError(t, err)
		return res
	}

	res := check(answer(true, nil), "db", caller)
	require.Equal(t, int32(codes.OK), res.GetStatus().GetCode())
	require.Equal(t, []asked{{"db", caller, "01:02:ab"}}, got)

	res = check(answer(false, nil), "db", caller)
	require.Equal(t, int32(codes.PermissionDenied), res.GetStatus().GetCode())
	require.Equal(t, "Matched intention: DENY default/bar => default/db", res.GetStatus().GetMessage())

	res = check(answer(true, errors.New("consul: connection refused")), "db", caller)
	require.Equal(t, int32(codes.PermissionDenied), res.GetStatus().GetCode(), "no answer is no")
	require.Equal(t, "Consul could not decide: consul: connection refused", res.GetStatus().GetMessage())

	got = nil
	for _, tc := range []struct{ target, principal, why string }{
		{"", caller, "the request names no Consul service"},
		{"db", "", "the caller's certificate has no SPIFFE ID"},
		{"db", "https://evil.example/", "the caller's certificate has no SPIFFE ID"},
	} {
		res := check(answer(true, nil), tc.target, tc.principal)
		require.Equal(t, int32(codes.PermissionDenied), res.GetStatus().GetCode())
		require.Equal(t, tc.why, res.GetStatus().GetMessage())
	}
	require.Empty(t, got, "Consul is not asked about a request that cannot be right")
	require.Equal(t, 1.0, testutil.ToFloat64(m.connectAllowed))
	require.Equal(t, 5.0, testutil.ToFloat64(m.connectDenied))
	require.Equal(t, 5, logs.FilterMessage("Consul Connect caller refused").Len())
}
