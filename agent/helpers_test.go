package agent

import (
	"testing"

	"github.com/meshfed/meshfed/model"
)

// exchanging starts two agents that federate: a, of mesh-a, exports
// inventory to mesh-b, and b, of mesh-b, dials a.
func exchanging(t *testing.T) (a, b *running) {
	t.Helper()
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	a = start(t, ma.config(t, mb, ""))
	a.Catalog.SetExports([]model.Export{inventory()})
	b = start(t, mb.config(t, ma, a.FederationAddr().String()))
	return a, b
}
