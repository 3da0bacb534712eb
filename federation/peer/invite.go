package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
)

// LoadAgentSVID is the agent's SVID as its configuration gives it: its
// files, or the Workload API. It signs invitations and proves this mesh
// at a join; it never leaves this process.
func LoadAgentSVID(ctx context.Context, cfg *config.Config) (*x509svid.SVID, error) {
	id := cfg.Identity
	if id.WorkloadAPI != "" {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(id.WorkloadAPI))
		if err != nil {
			return nil, fmt.Errorf("identity.workloadAPI: %w", err)
		}
		return s, nil
	}
	if id.Agent == nil {
		return nil, errors.New("identity.agent: no SVID files")
	}
	s, err := x509svid.Load(id.Agent.Cert, id.Agent.Key)
	if err != nil {
		return nil, fmt.Errorf("identity.agent: %w", err)
	}
	return s, nil
}

// OwnBundlePEM is this mesh's bundle, from its file in trustBundles: what
// peers verify its agent and gateways with.
func OwnBundlePEM(cfg *config.Config) (string, error) {
	src, ok := cfg.TrustBundles[cfg.TrustDomain]
	if !ok || src.File == "" {
		return "", fmt.Errorf("trustBundles.%s.file: peering needs this mesh's own bundle in a file", cfg.TrustDomain)
	}
	b, err := os.ReadFile(src.File)
	if err != nil {
		return "", fmt.Errorf("trustBundles.%s.file: %w", cfg.TrustDomain, err)
	}
	if _, err := ParseBundle(spiffeid.RequireTrustDomainFromString(cfg.TrustDomain), string(b)); err != nil {
		return "", fmt.Errorf("trustBundles.%s.file: %s: %v", cfg.TrustDomain, src.File, err)
	}
	return string(b), nil
}

// SelfName is what a mesh calls itself in invitations and joins: the
// first label of its trust domain (mesh-a for mesh-a.example).
func SelfName(trustDomain string) string {
	name, _, _ := strings.Cut(trustDomain, ".")
	return name
}

// SelfInfo describes this mesh to another: its trust domain and bundle,
// its agent's ID, its egress gateway's (the caller the other ingress
// admits), and the addresses its agent accepts peers on.
func SelfInfo(cfg *config.Config, agentID spiffeid.ID, bundlePEM string) (MeshInfo, error) {
	td := spiffeid.RequireTrustDomainFromString(cfg.TrustDomain)
	egress, err := certs.RoleID(td, model.Egress)
	if err != nil {
		return MeshInfo{}, err
	}
	m := MeshInfo{Name: SelfName(cfg.TrustDomain), TrustDomain: cfg.TrustDomain, Bundle: bundlePEM,
		AgentIDs: []string{agentID.String()}, Callers: []string{egress.String()}}
	m.Federation = slices.Clone(cfg.Federation.Advertise)
	if len(m.Federation) == 0 {
		if a, ok := config.AdvertisedAddr(cfg.Federation.Listen, ""); ok {
			m.Federation = []string{a}
		}
	}
	// An https_spiffe bundle endpoint is followed by the other side, so
	// that this mesh's CA can rotate. An https_web one is not offered:
	// its URL is the web certificate's host name, which the
	// configuration does not hold.
	if be := cfg.BundleEndpoint; be != nil && be.Profile == "https_spiffe" {
		if a, ok := config.AdvertisedAddr(be.Listen, ""); ok {
			m.BundleEndpoint = &BundleEndpointInfo{URL: "https://" + a + "/", Profile: be.Profile, SPIFFEID: agentID.String()}
		}
	}
	return m, nil
}

// InviteOptions are what meshfed peer invite is given.
type InviteOptions struct {
	Config *config.Config
	// Name is what this mesh calls the one it invites.
	Name string
	// TTL is how long the token may be used; zero is
	// DefaultInvitationTTL.
	TTL  time.Duration
	SVID *x509svid.SVID
	// Now is the clock; zero is time.Now().
	Now time.Time
}

// Invite issues an invitation for a mesh to be called o.Name, keeps its
// record (the secret hashed) and returns its token.
func Invite(o InviteOptions) (string, Invitation, error) {
	cfg := o.Config
	if err := config.CheckPeerName(o.Name); err != nil {
		return "", Invitation{}, err
	}
	if i := slices.IndexFunc(cfg.Peers, func(p config.Peer) bool { return p.Name == o.Name }); i >= 0 {
		return "", Invitation{}, fmt.Errorf("%s is a peer already (trust domain %s); meshfed peer remove %s first to invite it again", o.Name, cfg.Peers[i].TrustDomain, o.Name)
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = DefaultInvitationTTL
	}
	if ttl < time.Minute || ttl > MaxInvitationTTL {
		return "", Invitation{}, fmt.Errorf("--ttl: %s is out of range 1m-%s", ttl, MaxInvitationTTL)
	}
	j := cfg.Federation.Join
	if j == nil {
		return "", Invitation{}, errors.New("federation.join: not set, so no mesh can come to join: set federation.join.listen (such as 127.0.0.1:15445) and restart the agent")
	}
	joinAddr, ok := config.AdvertisedAddr(j.Listen, j.Advertise)
	if !ok {
		return "", Invitation{}, fmt.Errorf("federation.join.advertise: required, as federation.join.listen %s binds every address: the address the invited mesh dials", j.Listen)
	}
	bundle, err := OwnBundlePEM(cfg)
	if err != nil {
		return "", Invitation{}, err
	}
	self, err := SelfInfo(cfg, o.SVID.ID, bundle)
	if err != nil {
		return "", Invitation{}, err
	}
	if len(self.Federation) == 0 {
		return "", Invitation{}, fmt.Errorf("federation.advertise: required, as federation.listen %s binds every address: the addresses peers dial", cfg.Federation.Listen)
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	inv := Invitation{Name: o.Name, Mesh: self, Join: joinAddr}
	store := InvitationsOf(cfg.Federation.PeersDir)
	if err := newInvitation(&inv, now, ttl); err != nil {
		return "", Invitation{}, err
	}
	// Signed before it is kept: a token that cannot be signed leaves no
	// invitation behind.
	token, err := SignInvitation(inv, o.SVID)
	if err != nil {
		return "", Invitation{}, err
	}
	if err := store.keep(inv); err != nil {
		return "", Invitation{}, err
	}
	return token, inv, nil
}

// JoinOptions are what meshfed peer join is given.
type JoinOptions struct {
	Config *config.Config
	Token  string
	// Name is what this mesh calls the one that invited it; empty is
	// the name it gives itself.
	Name string
	SVID *x509svid.SVID
}

// Joined is a join done: the peer added to federation.peersDir.
type Joined struct {
	Name        string `json:"name"`
	TrustDomain string `json:"trustDomain"`
	// As is what the inviting mesh calls this one.
	As   string `json:"as"`
	Dial string `json:"dial"`
	File string `json:"file"`
}

// Join joins the mesh that issued the token: it checks the token, posts
// this mesh's description to the inviter's join endpoint, and writes the
// inviter, as it answered, into federation.peersDir. The refusals, here
// or the inviter's, are *TokenError.
func Join(ctx context.Context, o JoinOptions) (Joined, error) {
	cfg := o.Config
	inv, err := ReadInvitation(o.Token)
	if err != nil {
		return Joined{}, err
	}
	name := o.Name
	if name == "" {
		name = inv.Mesh.Name
	}
	if err := config.CheckPeerName(name); err != nil {
		return Joined{}, fmt.Errorf("--name: %w", err)
	}
	if inv.Mesh.TrustDomain == cfg.TrustDomain {
		return Joined{}, tokenErr(ReasonConflict, "the token is an invitation of this mesh's own trust domain %s", cfg.TrustDomain)
	}
	for _, p := range cfg.Peers {
		switch {
		case p.Name == name:
			return Joined{}, tokenErr(ReasonConflict, "%s is a peer already (trust domain %s); give the inviter another name with --name, or meshfed peer remove %s", name, p.TrustDomain, name)
		case p.TrustDomain == inv.Mesh.TrustDomain:
			return Joined{}, tokenErr(ReasonConflict, "trust domain %s is peer %s already", inv.Mesh.TrustDomain, p.Name)
		}
	}
	if _, ok := cfg.TrustBundles[inv.Mesh.TrustDomain]; ok {
		return Joined{}, tokenErr(ReasonConflict, "trustBundles.%s is set in the configuration: remove it, as the join brings the bundle", inv.Mesh.TrustDomain)
	}
	bundle, err := OwnBundlePEM(cfg)
	if err != nil {
		return Joined{}, err
	}
	self, err := SelfInfo(cfg, o.SVID.ID, bundle)
	if err != nil {
		return Joined{}, err
	}
	ans, err := JoinClient{SVID: o.SVID}.Join(ctx, o.Token, inv, self)
	if err != nil {
		return Joined{}, err
	}
	if len(ans.Mesh.Federation) == 0 {
		return Joined{}, fmt.Errorf("%s answered with no federation address to dial", inv.Mesh.TrustDomain)
	}
	dial := ans.Mesh.Federation[0]
	pf := PeerFileOf(name, ans.Mesh, dial, isLoopback(inv.Join))
	header := fmt.Sprintf("Added by meshfed peer join at %s: mesh %s invited this one as %s.\nmeshfed peer remove %s ends the federation.",
		time.Now().UTC().Format(time.RFC3339), inv.Mesh.TrustDomain, ans.Name, name)
	if err := config.WritePeerFile(cfg.Federation.PeersDir, pf, []byte(ans.Mesh.Bundle), header); err != nil {
		return Joined{}, err
	}
	return Joined{Name: name, TrustDomain: ans.Mesh.TrustDomain, As: ans.Name, Dial: dial, File: config.PeerFilePath(cfg.Federation.PeersDir, name)}, nil
}

// PeerFileOf is the peer file of mesh m, called name: it dials m at dial
// unless empty (m dials this one). A mesh reached over loopback runs on
// this host, so its ingress on loopback is allowed too.
// Its bundle is the file the join wrote beside, or, when m serves its
// bundle, fetched from there with that file as the bootstrap bundle.
func PeerFileOf(name string, m MeshInfo, dial string, loopback bool) config.PeerFile {
	// Relative to the folder of the peer file.
	bundle := &config.BundleSource{File: name + config.BundleFileSuffix}
	if e := m.BundleEndpoint; e != nil {
		bundle = &config.BundleSource{Endpoint: &config.BundleFetching{URL: e.URL, Profile: e.Profile, SPIFFEID: e.SPIFFEID, BootstrapBundle: bundle.File}}
	}
	return config.PeerFile{
		Peer:        config.Peer{Name: name, TrustDomain: m.TrustDomain, SPIFFEIDs: m.AgentIDs, Callers: m.Callers, Dial: dial, AllowLoopback: loopback},
		TrustBundle: bundle,
	}
}

// isLoopback reports whether addr (host:port) is a loopback IP address.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// IsTokenError reports the reason of a refused token or join, "" for
// another error.
func IsTokenError(err error) string {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	return ""
}
