package certs

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/model"
)

func TestExpiriesOfSVIDsAndBundles(t *testing.T) {
	ca := newCA(t, tdA)
	dir := t.TempDir()
	egressID, err := RoleID(tdA, model.Egress)
	require.NoError(t, err)
	notAfter := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	require.NoError(t, ca.writeSVID(egressID, 0, dir, "egress", WithValidity(time.Now().Add(-time.Minute), notAfter)))
	src, err := NewFileSVIDSource(FileSVIDConfig{
		Role: model.Egress, CertFile: filepath.Join(dir, "egress.pem"), KeyFile: filepath.Join(dir, "egress-key.pem"),
	}, zaptest.NewLogger(t), nil)
	require.NoError(t, err)
	defer src.Close()
	bundles := NewBundleSet(zaptest.NewLogger(t), nil)
	defer bundles.Close()
	require.NoError(t, bundles.Set(ca.Bundle()))
	id, err := NewIdentity(bundles, src)
	require.NoError(t, err)
	defer id.Close()

	caNotAfter := ca.Certificate().NotAfter
	want := []Expiry{
		{Role: "egress", TrustDomain: tdA.Name(), ID: egressID.String(), NotAfter: notAfter},
		{Role: RoleBundle, TrustDomain: tdA.Name(), NotAfter: caNotAfter},
	}
	got := id.Expiries()
	require.Len(t, got, 2)
	for i := range want {
		require.True(t, want[i].NotAfter.Equal(got[i].NotAfter), "%s: %s != %s", want[i].Role, want[i].NotAfter, got[i].NotAfter)
		got[i].NotAfter = want[i].NotAfter
	}
	require.Equal(t, want, got)

	// Only the SVID is within a week; with a window past the CA's expiry,
	// both, soonest first.
	require.Equal(t, want[:1], Expiring(got, time.Now(), 7*24*time.Hour))
	require.Equal(t, want, Expiring(got, time.Now(), time.Until(caNotAfter)+time.Hour))

	metrics := fmt.Sprintf(`# HELP meshfed_certificate_expiry_timestamp_seconds When each SVID in use (role agent, egress or ingress) and the first CA of each trust bundle (role bundle) expire, in Unix seconds.
# TYPE meshfed_certificate_expiry_timestamp_seconds gauge
meshfed_certificate_expiry_timestamp_seconds{role="bundle",trust_domain="%[1]s"} %[3]d
meshfed_certificate_expiry_timestamp_seconds{role="egress",trust_domain="%[1]s"} %[2]d
`, tdA.Name(), notAfter.Unix(), caNotAfter.Unix())
	require.NoError(t, testutil.CollectAndCompare(NewExpiryCollector(id), strings.NewReader(metrics)))
}
