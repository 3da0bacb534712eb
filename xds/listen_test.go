package xds

import (
	"path/filepath"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshfed/meshfed/internal/servetest"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot/cache"
)

func TestServeUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xds.sock")
	first, err := Listen("unix://" + path)
	require.NoError(t, err)
	first.Close()

	c := cache.New(roles, zaptest.NewLogger(t))
	require.NoError(t, c.Apply(model.Egress, []cache.Change{change(testCluster("a", 1), "a")}))
	s, err := New(withBounds(Config{Cache: c, NodeRole: roles, Address: "unix://" + path}))
	require.NoError(t, err)
	servetest.Start(t, nil, s.ListenAndServe)

	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	d := newDeltaClient(t, conn, "egress-delta")
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType})
	assert.Equal(t, []string{"a"}, []string{d.recv(resource.ClusterType).Resources[0].Name})
}
