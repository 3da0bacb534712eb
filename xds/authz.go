package xds

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/url"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/meshfed/meshfed/snapshot"
)

// ConnectAuthorizer says whether Consul's intentions let the caller whose
// certificate has URI clientURI and serial (hex, colon-separated, as
// Consul writes it) reach the Consul service target, and why.
type ConnectAuthorizer func(ctx context.Context, target, clientURI, serial string) (allowed bool, reason string, err error)

// connectAuthz answers the egress's authorization requests for Consul
// Connect callers (Envoy's network ext_authz, whose chain names the
// service it guards in the request's metadata): the gateway holds the
// connection until the answer, and closes it unless it is OK.
type connectAuthz struct {
	authorizer ConnectAuthorizer
	log        *zap.Logger
	metrics    *metrics
	// warnings bounds the denial lines: a caller may retry in a loop.
	warnings *rate.Limiter
}

func newConnectAuthz(a ConnectAuthorizer, m *metrics, log *zap.Logger) *connectAuthz {
	return &connectAuthz{authorizer: a, log: log, metrics: m, warnings: rate.NewLimiter(rate.Every(time.Second), 20)}
}

var _ authv3.AuthorizationServer = (*connectAuthz)(nil)

func (a *connectAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	targets := md.Get(snapshot.ConnectAuthzTarget)
	src := req.GetAttributes().GetSource()
	caller := src.GetPrincipal()
	deny := func(why string) (*authv3.CheckResponse, error) {
		a.metrics.connectDenied.Inc()
		if a.warnings.Allow() {
			a.log.Warn("Consul Connect caller refused", zap.String("caller", clip(caller)), zap.Strings("target", targets), zap.String("reason", clip(why)))
		}
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: clip(why)}}, nil
	}
	if len(targets) != 1 || targets[0] == "" {
		return deny("the request names no Consul service")
	}
	if u, err := url.Parse(caller); err != nil || u.Scheme != "spiffe" {
		return deny("the caller's certificate has no SPIFFE ID")
	}
	allowed, reason, err := a.authorizer(ctx, targets[0], caller, serialOf(src.GetCertificate()))
	switch {
	case err != nil:
		return deny("Consul could not decide: " + err.Error())
	case !allowed:
		return deny(reason)
	}
	a.metrics.connectAllowed.Inc()
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}, nil
}

// serialOf is the serial number of the PEM certificate, as Consul writes
// serials (hex bytes joined by colons); "" when there is none.
func serialOf(certPEM string) string {
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		return ""
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return ""
	}
	h := hex.EncodeToString(c.SerialNumber.Bytes())
	var parts []string
	for i := 0; i+2 <= len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}
