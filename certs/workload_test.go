package certs

import (
	"context"
	"encoding/pem"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/meshfed/meshfed/internal/workloadtest"
	"github.com/meshfed/meshfed/model"
)

func der(t *testing.T, pemBytes []byte) []byte {
	t.Helper()
	var out []byte
	for {
		var b *pem.Block
		b, pemBytes = pem.Decode(pemBytes)
		if b == nil {
			return out
		}
		out = append(out, b.Bytes...)
	}
}

func workloadResponse(t *testing.T, ca *CA, ids ...spiffeid.ID) *workload.X509SVIDResponse {
	t.Helper()
	r := &workload.X509SVIDResponse{}
	for _, id := range ids {
		chain, key, err := ca.Issue(id, time.Hour)
		require.NoError(t, err)
		r.Svids = append(r.Svids, &workload.X509SVID{
			SpiffeId: id.String(), X509Svid: der(t, chain), X509SvidKey: der(t, key), Bundle: ca.Certificate().Raw,
		})
	}
	return r
}

func TestWorkloadSVIDSourcePicksRoleAndRotates(t *testing.T) {
	ca := newCA(t, tdA)
	agentID, err := RoleID(tdA, model.Agent)
	require.NoError(t, err)
	egressID, err := RoleID(tdA, model.Egress)
	require.NoError(t, err)
	fake, addr := workloadtest.Start(t)
	fake.Send(workloadResponse(t, ca, agentID, egressID))

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	m := newMetrics(t)
	src, err := NewWorkloadSVIDSource(ctx, WorkloadSVIDConfig{Role: model.Egress, Addr: addr, ID: egressID}, zaptest.NewLogger(t), m)
	require.NoError(t, err)
	defer src.Close()
	first, err := src.GetX509SVID()
	require.NoError(t, err)
	require.Equal(t, egressID, first.ID)
	changed, unsubscribe := src.Subscribe()
	defer unsubscribe()

	fake.Send(workloadResponse(t, ca, agentID, egressID))
	waitSignal(t, changed)
	next, err := src.GetX509SVID()
	require.NoError(t, err)
	require.Equal(t, egressID, next.ID)
	require.NotEqual(t, first.Certificates[0].SerialNumber, next.Certificates[0].SerialNumber)
	require.Equal(t, 1.0, counterValue(m.rotations.WithLabelValues(KindSVID, "egress")))
	mat, err := src.Material()
	require.NoError(t, err)
	require.Equal(t, next.Certificates[0].SerialNumber, parseLeaf(t, mat.ChainPEM).SerialNumber)
}
