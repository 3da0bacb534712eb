package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
