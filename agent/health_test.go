package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/xds/adsclient"
)

// An SVID in use that expires within identity.expiryWarning needs a look:
// the status marks it, and meshfed status exits with 2 for it, while the
// agent stays ready and not degraded (it still works).
func TestSVIDWithinItsExpiryWarningShowsInTheStatus(t *testing.T) {
	root := t.TempDir()
	ma, mb := newMesh(t, root, "mesh-a"), newMesh(t, root, "mesh-b")
	c := ma.config(t, mb, "")
	td := spiffeid.RequireTrustDomainFromString("mesh-a.example")
	id, err := certs.RoleID(td, model.Egress)
	require.NoError(t, err)
	dir := filepath.Join(ma.dir, "certs")
	require.NoError(t, certs.IssueSVID(dir, id, dir, "egress", certs.WithValidity(time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))))
	a := start(t, c)
	require.Eventually(t, func() bool { return a.Ready() == nil }, waitFor, 10*time.Millisecond)
	// Both gateways connected: a role without one is a problem of its own.
	for _, node := range []string{"egress-gateway", "ingress-gateway"} {
		connect(t, a.Agent, adsclient.Options{NodeID: node, Delta: true})
	}
	var s Status
	require.Eventually(t, func() bool {
		v, err := a.Status(context.Background())
		s = v.(Status)
		return err == nil && len(s.Gateways) == 2
	}, waitFor, 10*time.Millisecond)
	var expiring []string
	for _, sv := range s.SVIDs {
		if sv.Expiring {
			expiring = append(expiring, sv.Role)
		}
	}
	require.Equal(t, []string{"egress"}, expiring, "the default warning is 168h; the others last 30 days")
	problems := s.Problems()
	require.Len(t, problems, 1)
	require.True(t, strings.HasPrefix(problems[0], "identity.egress: the SVID in use (serial "), problems[0])
	require.Contains(t, problems[0], "Z, within identity.expiryWarning; write a new one")
	require.Empty(t, a.Degraded())
}
