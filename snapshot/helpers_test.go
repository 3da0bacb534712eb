package snapshot_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/snapshottest"
)

// assertProtoEqual fails t when got differs from want.
func assertProtoEqual(t *testing.T, want, got any) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("unexpected difference (-want +got):\n%s", diff)
	}
}

func loadInput(t testing.TB, path string) *snapshot.Input {
	t.Helper()
	in, err := snapshottest.LoadInput(path)
	require.NoError(t, err)
	return in
}

func render(t testing.TB, res *snapshot.Resources) []byte {
	t.Helper()
	b, err := snapshottest.Render(res)
	require.NoError(t, err)
	return b
}

// mustCheck fails t when res does not pass Check.
func mustCheck(t testing.TB, res *snapshot.Resources) {
	t.Helper()
	require.NoError(t, snapshot.Check(res))
}
