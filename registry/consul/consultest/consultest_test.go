package consultest

import (
	"testing"

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
