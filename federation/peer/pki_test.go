package peer_test

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/federation/peer"
	"github.com/meshfed/meshfed/federation/validate"
)

// pki is one development CA per mesh, each mesh trusting every other's:
// what a federation of meshes that do not share a CA looks like.
type pki struct {
	cas map[string]*certs.CA
}

func newPKI(t *testing.T, meshes ...string) *pki {
	p := &pki{cas: map[string]*certs.CA{}}
	for _, m := range meshes {
		ca, err := certs.NewTestCA(spiffeid.RequireTrustDomainFromString(m + ".example"))
		require.NoError(t, err)
		p.cas[m] = ca
	}
	return p
}

func (p *pki) td(mesh string) string { return mesh + ".example" }

// tls is the mesh's agent identity, trusting every mesh of the pki but
// evil, which trusts all yet is trusted by none.
func (p *pki) tls(t *testing.T, mesh string) peer.SPIFFETLS {
	return p.tlsAs(t, mesh, "/meshfed/agent")
}

// tlsAs is tls with another identity of the mesh, such as a workload's.
func (p *pki) tlsAs(t *testing.T, mesh, path string) peer.SPIFFETLS {
	ca := p.cas[mesh]
	svid, err := ca.IssueX509SVID(spiffeid.RequireFromPath(ca.TrustDomain(), path), time.Hour)
	require.NoError(t, err)
	set := x509bundle.NewSet()
	for name, other := range p.cas {
		if name == "evil" && mesh != "evil" {
			continue
		}
		set.Add(other.X509Bundle())
	}
	return peer.SPIFFETLS{SVID: svid, Bundles: set}
}

func policy(td string) validate.Policy {
	return validate.Policy{TrustDomain: spiffeid.RequireTrustDomainFromString(td)}
}
