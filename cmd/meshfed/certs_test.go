package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c := root()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func TestCertsInitThenIssue(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, "certs", "init", "--trust-domain", "mesh-a.example", "--out", dir)
	require.NoError(t, err)
	assert.Contains(t, out, "wrote a development CA for mesh-a.example")

	for role, id := range map[string]string{
		"agent":   "spiffe://mesh-a.example/meshfed/agent",
		"egress":  "spiffe://mesh-a.example/meshfed/gateway/egress",
		"ingress": "spiffe://mesh-a.example/meshfed/gateway/ingress",
	} {
		svid, err := x509svid.Load(filepath.Join(dir, role+".pem"), filepath.Join(dir, role+"-key.pem"))
		require.NoError(t, err, role)
		assert.Equal(t, id, svid.ID.String())
		leaf := svid.Certificates[0]
		assert.False(t, leaf.IsCA, role)
		assert.Len(t, leaf.URIs, 1, role)
		assert.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage, role)
		fi, err := os.Stat(filepath.Join(dir, role+"-key.pem"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), role)
	}

	_, err = run(t, "certs", "init", "--trust-domain", "mesh-a.example", "--out", dir)
	require.ErrorContains(t, err, "refusing to replace a CA without Overwrite")

	out, err = run(t, "certs", "issue", "--ca", dir, "--spiffe-id", "spiffe://mesh-a.example/ns/payments", "--out", dir, "--name", "payments")
	require.NoError(t, err)
	assert.Contains(t, out, "wrote payments.pem and payments-key.pem for spiffe://mesh-a.example/ns/payments")
	svid, err := x509svid.Load(filepath.Join(dir, "payments.pem"), filepath.Join(dir, "payments-key.pem"))
	require.NoError(t, err)
	assert.Equal(t, "spiffe://mesh-a.example/ns/payments", svid.ID.String())

	_, err = run(t, "certs", "issue", "--ca", dir, "--spiffe-id", "not-a-spiffe-id", "--out", dir)
	require.ErrorContains(t, err, `--spiffe-id "not-a-spiffe-id"`)
	_, err = run(t, "certs", "init", "--trust-domain", "Bad Domain", "--out", t.TempDir())
	require.ErrorContains(t, err, `--trust-domain "Bad Domain"`)
}

// An agent certificate with DNS and IP SANs for peers that verify host
// names keeps its one SPIFFE ID, and passes the checks SPIFFE peers make.
func TestCertsIssueWithDNSAndIPSANs(t *testing.T) {
	dir := t.TempDir()
	_, err := run(t, "certs", "init", "--trust-domain", "mesh-a.example", "--out", dir)
	require.NoError(t, err)
	_, err = run(t, "certs", "issue", "--ca", dir, "--spiffe-id", "spiffe://mesh-a.example/meshfed/agent", "--out", dir, "--name", "agent",
		"--dns", "hamlet.mesh-a.example", "--dns", "*.agents.mesh-a.example", "--ip", "192.0.2.10", "--ip", "2001:db8::10")
	require.NoError(t, err)
	svid, err := x509svid.Load(filepath.Join(dir, "agent.pem"), filepath.Join(dir, "agent-key.pem"))
	require.NoError(t, err)
	leaf := svid.Certificates[0]
	assert.Equal(t, "spiffe://mesh-a.example/meshfed/agent", svid.ID.String())
	assert.Len(t, leaf.URIs, 1)
	assert.Equal(t, []string{"hamlet.mesh-a.example", "*.agents.mesh-a.example"}, leaf.DNSNames)
	require.Len(t, leaf.IPAddresses, 2)
	assert.Equal(t, "192.0.2.10", leaf.IPAddresses[0].String())
	assert.Equal(t, "2001:db8::10", leaf.IPAddresses[1].String())
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		require.NoError(t, certs.CheckPeerLeaf(leaf, u, time.Now()))
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), filepath.Join(dir, "bundle.pem"))
	require.NoError(t, err)
	_, _, err = x509svid.Verify(svid.Certificates, bundle)
	require.NoError(t, err)
	for _, name := range []string{"hamlet.mesh-a.example", "a1.agents.mesh-a.example", "192.0.2.10", "2001:db8::10"} {
		require.NoError(t, leaf.VerifyHostname(name), name)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dns", "bad_name.example"}, `--dns "bad_name.example": certs: DNS name "bad_name.example" holds '_'`},
		{[]string{"--dns", "https://x.example"}, `--dns "https://x.example": certs: DNS name "https://x.example" holds ':'`},
		{[]string{"--ip", "192.0.2.300"}, `--ip "192.0.2.300" is not an IP address`},
		{[]string{"--ip", "fe80::1%eth0"}, `--ip "fe80::1%eth0" is not an IP address`},
	} {
		args := append([]string{"certs", "issue", "--ca", dir, "--spiffe-id", "spiffe://mesh-a.example/x", "--out", dir, "--name", "x"}, tc.args...)
		_, err := run(t, args...)
		require.ErrorContains(t, err, tc.want)
	}
}
