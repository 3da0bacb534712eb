package e2e

import (
	"context"
	"fmt"
	"testing"
)

// After both agents restart, an export withdrawn and exported again is
// served to both gateways of both meshes as their agents serve it.
func TestReexportAfterRestart(t *testing.T) {
	a, b := federate(t, options{})
	a.restartAgent()
	b.restartAgent()

	b.writeServices(false)
	eventually(t, "mesh-a's import of mesh-b's service is gone", func(context.Context) error {
		if n := len(a.agent.Catalog.Imports()); n != 0 {
			return fmt.Errorf("%d imports left", n)
		}
		return nil
	})
	a.checkGateways()
	b.checkGateways()
	b.writeServices(true)
	a.waitImported()
	a.checkGateways()
	b.checkGateways()
}
