package agent

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

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
