package consultest

import (
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"
)

func TestStart(t *testing.T) {
	a := Start(t)
	leader, err := a.Client(t, "").Status().Leader()
	require.NoError(t, err)
	require.NotEmpty(t, leader)
}

func TestStartACL(t *testing.T) {
	a := StartACL(t, "b4c1d7e2-0000-4000-8000-000000000001")
	_, _, err := a.Client(t, "").Catalog().Nodes(nil)
	require.NoError(t, err) // anonymous reads are filtered, not refused
	_, _, err = a.Client(t, "wrong").Catalog().Nodes(nil)
	require.ErrorContains(t, err, "403 (ACL not found)")
	_, _, err = a.Client(t, a.MasterToken).ACL().TokenReadSelf(nil)
	require.NoError(t, err)
}

func TestRestartComesBackEmptyOnTheSameAddress(t *testing.T) {
	a := Start(t)
	addr := a.HTTPAddr
	c := a.Client(t, "")
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "n1", Address: "10.0.0.1", Service: &api.AgentService{ID: "s1", Service: "s"}}, nil)
	require.NoError(t, err)
	a.Restart(t)
	require.Equal(t, addr, a.HTTPAddr)
	entries, _, err := c.Catalog().Service("s", "", nil)
	require.NoError(t, err)
	require.Empty(t, entries)
}
