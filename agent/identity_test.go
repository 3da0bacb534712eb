package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/certs"
)

// The agent refuses to start with an SVID that is not an agent's of its
// own trust domain: peers would refuse it, or take it for a gateway.
func TestAgentSVIDIsCheckedAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		svid func(t *testing.T, a, b mesh) (cert, key string)
		want string
	}{
		{"another trust domain", func(t *testing.T, _, b mesh) (string, string) {
			return filepath.Join(b.dir, "certs", "agent.pem"), filepath.Join(b.dir, "certs", "agent-key.pem")
		}, `identity.agent: certs: SVID for role agent has SPIFFE ID spiffe://mesh-b.example/meshfed/agent, which is not in trust domain "mesh-a.example" (in %s)`},
		{"a gateway's identity", func(t *testing.T, a, _ mesh) (string, string) {
			return filepath.Join(a.dir, "certs", "egress.pem"), filepath.Join(a.dir, "certs", "egress-key.pem")
		}, "identity.agent: certs: SVID for role agent has SPIFFE ID spiffe://mesh-a.example/meshfed/gateway/egress, the egress gateway's identity (are two roles' files swapped?) (in %s)"},
		{"a server-only certificate", func(t *testing.T, a, _ mesh) (string, string) {
			return issueWithUsages(t, a, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
		}, "identity.agent: certs: SVID spiffe://mesh-a.example/meshfed/agent lacks the clientAuth extended key usage the agent needs (in %s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
			c := ma.config(t, mb, "")
			c.Identity.Agent.Cert, c.Identity.Agent.Key = tc.svid(t, ma, mb)
			_, err := New(context.Background(), c, zap.NewNop(), prometheus.NewRegistry())
			require.EqualError(t, err, fmt.Sprintf(tc.want, c.Identity.Agent.Cert))
		})
	}
}

func issueWithUsages(t *testing.T, m mesh, usages []x509.ExtKeyUsage) (cert, key string) {
	ca, err := certs.LoadCA(filepath.Join(m.dir, "certs"))
	require.NoError(t, err)
	id := spiffeid.RequireFromPath(ca.TrustDomain(), "/meshfed/agent")
	chain, keyPEM, err := ca.IssueTemplate(&x509.Certificate{
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
		URIs: []*url.URL{id.URL()},
	})
	require.NoError(t, err)
	cert, key = filepath.Join(m.dir, "server-only.pem"), filepath.Join(m.dir, "server-only-key.pem")
	require.NoError(t, os.WriteFile(cert, chain, 0o600))
	require.NoError(t, os.WriteFile(key, keyPEM, 0o600))
	return cert, key
}

// A peer that accepts any ID of its trust domain is a warning at start.
func TestAnyIDInTrustDomainWarnsAtStart(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	c := ma.config(t, mb, "")
	c.Peers[0].SPIFFEIDs, c.Peers[0].AnyIDInTrustDomain = nil, true
	core, logs := observer.New(zapcore.WarnLevel)
	a, err := New(context.Background(), c, zap.New(core), prometheus.NewRegistry())
	require.NoError(t, err)
	a.close()
	var warned []map[string]any
	for _, e := range logs.All() {
		if e.ContextMap()["peer"] == "mesh-b" {
			warned = append(warned, e.ContextMap())
		}
	}
	require.Equal(t, []map[string]any{{"peer": "mesh-b", "trustDomain": "mesh-b.example"}}, warned)
}
