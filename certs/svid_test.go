package certs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/model"
)

func newMetrics(t *testing.T) *Metrics {
	t.Helper()
	return NewMetrics(prometheus.NewRegistry())
}

// counterValue reads a counter without prometheus/testutil, which would pull
// in another module.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func TestFileSVIDRotationKeepsOpenConnections(t *testing.T) {
	ca := newCA(t, tdA)
	dir := t.TempDir()
	agentID := mustID(t, tdA, "/meshfed/agent")
	require.NoError(t, ca.writeSVID(agentID, time.Hour, dir, "agent"))
	m := newMetrics(t)
	src, err := NewFileSVIDSource(FileSVIDConfig{
		Role: model.Agent, CertFile: filepath.Join(dir, "agent.pem"), KeyFile: filepath.Join(dir, "agent-key.pem"), ID: agentID,
	}, zaptest.NewLogger(t), m)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, src.Close()) })
	changed, cancel := src.Subscribe()
	defer cancel()

	bundles := NewBundleSet(zaptest.NewLogger(t), m)
	t.Cleanup(func() { _ = bundles.Close() })
	require.NoError(t, bundles.Set(ca.Bundle()))
	client, err := ca.IssueX509SVID(mustID(t, tdA, "/client"), time.Hour)
	require.NoError(t, err)
	srv := startEchoServer(t, ServerTLSConfig(src, bundles, tlsconfig.AuthorizeAny()))
	clientCfg := ClientTLSConfig(client, bundles, tlsconfig.AuthorizeID(agentID))

	old, err := dial(t, srv.addr, clientCfg)
	require.NoError(t, err)
	require.NoError(t, srv.serverErr(t))
	echo(t, old, "before")
	oldSerial := old.ConnectionState().PeerCertificates[0].SerialNumber

	require.NoError(t, ca.writeSVID(agentID, time.Hour, dir, "agent"))
	waitSignal(t, changed)
	want := readCert(t, filepath.Join(dir, "agent.pem")).SerialNumber
	require.NotEqual(t, oldSerial, want)

	fresh, err := dial(t, srv.addr, clientCfg)
	require.NoError(t, err)
	require.NoError(t, srv.serverErr(t))
	require.Equal(t, want, fresh.ConnectionState().PeerCertificates[0].SerialNumber)
	echo(t, fresh, "new")
	echo(t, old, "still open")
	require.Equal(t, 1.0, counterValue(m.rotations.WithLabelValues(KindSVID, "agent")))

	mat, err := src.Material()
	require.NoError(t, err)
	require.Equal(t, agentID, mat.ID)
	require.Equal(t, want, parseLeaf(t, mat.ChainPEM).SerialNumber)
}

func TestFileSVIDKeepsLastGoodOnBadFiles(t *testing.T) {
	ca := newCA(t, tdA)
	dir := t.TempDir()
	agentID := mustID(t, tdA, "/meshfed/agent")
	require.NoError(t, ca.writeSVID(agentID, time.Hour, dir, "agent"))
	m := newMetrics(t)
	src, err := NewFileSVIDSource(FileSVIDConfig{
		Role: model.Agent, CertFile: filepath.Join(dir, "agent.pem"), KeyFile: filepath.Join(dir, "agent-key.pem"), ID: agentID,
	}, zaptest.NewLogger(t), m)
	require.NoError(t, err)
	defer src.Close()
	good, err := src.GetX509SVID()
	require.NoError(t, err)

	require.NoError(t, writeFileAtomic(filepath.Join(dir, "agent.pem"), []byte("garbage"), certMode))
	require.Eventually(t, func() bool {
		return counterValue(m.loadFailures.WithLabelValues(KindSVID, "agent")) >= 1
	}, waitTimeout, 10*time.Millisecond)

	// An SVID for another workload is refused like a broken file.
	require.NoError(t, ca.writeSVID(mustID(t, tdA, "/someone/else"), time.Hour, dir, "agent"))
	require.Eventually(t, func() bool {
		return counterValue(m.loadFailures.WithLabelValues(KindSVID, "agent")) >= 2
	}, waitTimeout, 10*time.Millisecond)
	cur, err := src.GetX509SVID()
	require.NoError(t, err)
	require.Same(t, good, cur)

	_, err = NewFileSVIDSource(FileSVIDConfig{
		Role: model.Egress, CertFile: filepath.Join(dir, "agent.pem"), KeyFile: filepath.Join(dir, "agent-key.pem"), ID: agentID,
	}, nil, nil)
	require.ErrorContains(t, err, `certs: SVID for role egress has SPIFFE ID "spiffe://a.example/someone/else", want "spiffe://a.example/meshfed/agent"`)
}

// The kubelet and cert-manager's CSI driver publish a secret as symlinks
// into a "..data" symlink, and rotate by renaming a new "..data" into place.
func TestFileSVIDFollowsSymlinkSwap(t *testing.T) {
	ca := newCA(t, tdA)
	dir := t.TempDir()
	id := mustID(t, tdA, "/meshfed/gateway/egress")
	publish := func(version string) {
		vdir := filepath.Join(dir, version)
		require.NoError(t, os.Mkdir(vdir, 0o755))
		require.NoError(t, ca.writeSVID(id, time.Hour, vdir, "tls"))
		tmp := filepath.Join(dir, "..data_tmp")
		require.NoError(t, os.Symlink(version, tmp))
		require.NoError(t, os.Rename(tmp, filepath.Join(dir, "..data")))
	}
	publish("..v1")
	require.NoError(t, os.Symlink("..data/tls.pem", filepath.Join(dir, "tls.crt")))
	require.NoError(t, os.Symlink("..data/tls-key.pem", filepath.Join(dir, "tls.key")))

	src, err := NewFileSVIDSource(FileSVIDConfig{
		Role: model.Egress, CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
	}, zaptest.NewLogger(t), nil)
	require.NoError(t, err)
	defer src.Close()
	changed, cancel := src.Subscribe()
	defer cancel()

	publish("..v2")
	waitSignal(t, changed)
	cur, err := src.GetX509SVID()
	require.NoError(t, err)
	require.Equal(t, readCert(t, filepath.Join(dir, "..v2", "tls.pem")).SerialNumber, cur.Certificates[0].SerialNumber)
}

func TestPrivateKeyIsRedacted(t *testing.T) {
	ca := newCA(t, tdA)
	svid, err := ca.IssueX509SVID(mustID(t, tdA, "/meshfed/agent"), time.Hour)
	require.NoError(t, err)
	mat, err := svidMaterial(svid)
	require.NoError(t, err)
	require.Contains(t, string(mat.KeyPEM), "PRIVATE KEY")

	core, logs := observer.New(zapcore.DebugLevel)
	zap.New(core).Info("material", zap.Any("m", mat), zap.Stringer("k", mat.KeyPEM), zap.Any("key", mat.KeyPEM))
	jsonOut, err := json.Marshal(mat)
	require.NoError(t, err)
	outputs := []string{
		fmt.Sprintf("%v %+v %#v %s %q %x", mat, mat, mat, mat.KeyPEM, mat.KeyPEM, mat.KeyPEM),
		fmt.Sprint(mat.KeyPEM), string(jsonOut), fmt.Errorf("wrapped: %v", mat.KeyPEM).Error(),
	}
	for _, e := range logs.All() {
		outputs = append(outputs, fmt.Sprint(e.ContextMap()))
	}
	for _, out := range outputs {
		require.NotContains(t, out, "PRIVATE KEY")
		require.Contains(t, out, "[REDACTED]")
	}
}

func TestSubscribeCoalescesAndCancels(t *testing.T) {
	var n notifier
	ch, cancel := n.Subscribe()
	n.notify()
	n.notify()
	waitSignal(t, ch)
	select {
	case <-ch:
		t.Fatal("burst was not coalesced")
	default:
	}
	cancel()
	cancel()
	n.notify()
	select {
	case <-ch:
		t.Fatal("notified after cancel")
	default:
	}
	require.True(t, strings.HasPrefix(redacted, "["))
}

func TestIdentityForwardsChanges(t *testing.T) {
	ca := newCA(t, tdA)
	dir := t.TempDir()
	egressID, err := RoleID(tdA, model.Egress)
	require.NoError(t, err)
	require.NoError(t, ca.writeSVID(egressID, time.Hour, dir, "egress"))
	src, err := NewFileSVIDSource(FileSVIDConfig{
		Role: model.Egress, CertFile: filepath.Join(dir, "egress.pem"), KeyFile: filepath.Join(dir, "egress-key.pem"),
	}, zaptest.NewLogger(t), nil)
	require.NoError(t, err)
	defer src.Close()
	bundles := NewBundleSet(zaptest.NewLogger(t), nil)
	defer bundles.Close()
	id, err := NewIdentity(bundles, src)
	require.NoError(t, err)
	defer id.Close()
	_, err = NewIdentity(bundles, src, src)
	require.ErrorContains(t, err, "certs: two SVID sources for role egress")
	changed, cancel := id.Subscribe()
	defer cancel()

	require.NoError(t, bundles.Set(ca.Bundle()))
	waitSignal(t, changed)
	b, err := id.Bundle(tdA)
	require.NoError(t, err)
	require.Equal(t, string(ca.CertPEM()), string(b.PEM))

	require.NoError(t, ca.writeSVID(egressID, time.Hour, dir, "egress"))
	waitSignal(t, changed)
	mat, err := id.SVID(model.Egress)
	require.NoError(t, err)
	require.Equal(t, readCert(t, filepath.Join(dir, "egress.pem")).SerialNumber, parseLeaf(t, mat.ChainPEM).SerialNumber)
	_, err = id.SVID(model.Ingress)
	require.ErrorContains(t, err, "certs: no SVID configured for role ingress")
}
