package agent

import (
	"context"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/peer"
)

// The join endpoint (federation.join) adds the meshes that come with an
// invitation of this agent (meshfed peer invite) as peers: a file each in
// federation.peersDir, applied by a reload, as an operator's edit would
// be.

// listenJoin opens the join endpoint's listener, nil when it is off.
func (a *Agent) listenJoin() (net.Listener, error) {
	j := a.cfg.Federation.Join
	if j == nil {
		return nil, nil
	}
	ln, err := net.Listen("tcp", j.Listen)
	if err != nil {
		return nil, fmt.Errorf("federation.join.listen: %w", err)
	}
	return ln, nil
}

// serveJoin serves the join endpoint on ln until ctx ends.
func (a *Agent) serveJoin(ctx context.Context, g *errgroup.Group, ln net.Listener) error {
	srv, err := peer.NewJoinServer(peer.JoinServerConfig{SVID: a.creds.svid, Own: a.creds.bundles, Accept: a.acceptJoin, Log: a.log.Named("join"), Registerer: a.reg})
	if err != nil {
		_ = ln.Close()
		return err
	}
	g.Go(func() error {
		a.log.Info("accepting joins of invited meshes", zap.Stringer("address", ln.Addr()))
		return srv.Serve(ctx, ln)
	})
	return nil
}

// JoinAddr is the join endpoint's address, nil when it is off; valid
// after Listening.
func (a *Agent) JoinAddr() net.Addr {
	if a.addrs.join == nil {
		return nil
	}
	return a.addrs.join.Addr()
}

// acceptJoin adds the mesh that came with invitation inv as a peer: the
// invitation is claimed, the peer's file written and the configuration
// reloaded; a failure undoes the file and frees the invitation for
// another try.
func (a *Agent) acceptJoin(ctx context.Context, inv peer.Invitation, joiner peer.MeshInfo, _ spiffeid.ID, remote netip.AddrPort) (peer.JoinAnswer, error) {
	a.joinMu.Lock()
	defer a.joinMu.Unlock()
	a.reloadMu.Lock()
	cfg := a.current
	a.reloadMu.Unlock()
	done, err := peer.InvitationsOf(cfg.Federation.PeersDir).Claim(inv, time.Now())
	if err != nil {
		return peer.JoinAnswer{}, err
	}
	used := false
	defer func() { done(used) }()
	if joiner.TrustDomain == cfg.TrustDomain {
		return peer.JoinAnswer{}, &peer.TokenError{Reason: peer.ReasonConflict, Msg: fmt.Sprintf("the joining mesh is of this mesh's own trust domain %s", cfg.TrustDomain)}
	}
	for _, p := range cfg.Peers {
		if p.Name == inv.Name || p.TrustDomain == joiner.TrustDomain {
			return peer.JoinAnswer{}, &peer.TokenError{Reason: peer.ReasonConflict, Msg: fmt.Sprintf("peer %s (trust domain %s) is there already", p.Name, p.TrustDomain)}
		}
	}
	if _, ok := cfg.TrustBundles[joiner.TrustDomain]; ok {
		return peer.JoinAnswer{}, &peer.TokenError{Reason: peer.ReasonConflict, Msg: fmt.Sprintf("trust domain %s has a bundle in the inviter's configuration already", joiner.TrustDomain)}
	}
	self, err := a.selfInfo(cfg)
	if err != nil {
		return peer.JoinAnswer{}, err
	}
	dir := cfg.Federation.PeersDir
	// This side does not dial: the joining mesh dials it, as it reached
	// the join endpoint.
	pf := peer.PeerFileOf(inv.Name, joiner, "", remote.Addr().Unmap().IsLoopback())
	header := fmt.Sprintf("Added by the join endpoint at %s: mesh %s joined with invitation %s.\nmeshfed peer remove %s ends the federation.",
		time.Now().UTC().Format(time.RFC3339), joiner.TrustDomain, inv.ID, inv.Name)
	if err := config.WritePeerFile(dir, pf, []byte(joiner.Bundle), header); err != nil {
		return peer.JoinAnswer{}, err
	}
	res, err := a.Reload(ctx)
	if err != nil {
		if rerr := config.RemovePeerFile(dir, inv.Name); rerr != nil {
			a.log.Error("removing the peer file of a join that failed", zap.String("peer", inv.Name), zap.Error(rerr))
		}
		return peer.JoinAnswer{}, err
	}
	if !slices.Contains(res.Applied, "peers["+inv.Name+"]") {
		a.log.Warn("peer added by a join waits for a restart", zap.String("peer", inv.Name), zap.Strings("needsRestart", res.NeedsRestart))
	}
	used = true
	return peer.JoinAnswer{Name: inv.Name, Mesh: self}, nil
}

// selfInfo is this mesh as a join's answer describes it: its bundle as
// it is in use now.
func (a *Agent) selfInfo(cfg *config.Config) (peer.MeshInfo, error) {
	svid, err := a.creds.svid.GetX509SVID()
	if err != nil {
		return peer.MeshInfo{}, err
	}
	b, err := a.creds.bundles.GetX509BundleForTrustDomain(a.creds.td)
	if err != nil {
		return peer.MeshInfo{}, err
	}
	var pemCAs strings.Builder
	for _, c := range b.X509Authorities() {
		_ = pem.Encode(&pemCAs, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return peer.SelfInfo(cfg, svid.ID, pemCAs.String())
}

// liveBundles applies (with load; else says) the trust bundles that came
// or went with peers of next (federation.peersDir): a new trust domain's
// bundle is loaded now, so that its peer applies without a restart, and
// one removed is dropped once the reload applied the rest (dropBundles).
// It returns the trustBundles fields it applied; a bundle whose source
// changed waits for the restart.
func (a *Agent) liveBundles(next *config.Config, changed []string, load bool) ([]string, error) {
	var out []string
	for _, f := range changed {
		td, ok := strings.CutPrefix(f, "trustBundles.")
		if !ok {
			continue
		}
		_, inCur := a.current.TrustBundles[td]
		src, inNext := next.TrustBundles[td]
		switch {
		case inCur && inNext:
			continue // changed: loaded at start
		case inCur:
			out = append(out, f)
			continue
		case !inNext:
			continue // a field of a bundle
		}
		if loaded, ok := a.heldBundles()[td]; ok {
			if reflect.DeepEqual(loaded, src) {
				out = append(out, f)
			}
			continue
		}
		if !load {
			out = append(out, f)
			continue
		}
		if err := a.addBundle(td, src); err != nil {
			return nil, err
		}
		a.heldBundles()[td] = src
		out = append(out, f)
	}
	return out, nil
}

// addBundle keeps the bundle of trust domain td current from src, as at
// start (trustBundles).
func (a *Agent) addBundle(td string, src config.BundleSource) error {
	name := spiffeid.RequireTrustDomainFromString(td)
	if e := src.Endpoint; e != nil {
		ec := certs.EndpointConfig{
			TrustDomain: name, URL: e.URL, Profile: certs.Profile(e.Profile),
			BootstrapFile: e.BootstrapBundle, WebCAFile: e.CAFile, SavedFile: a.cfg.SavedBundlePath(td),
		}
		if e.SPIFFEID != "" {
			ec.EndpointID = spiffeid.RequireFromString(e.SPIFFEID)
		}
		if err := a.creds.bundles.AddEndpoint(ec); err != nil {
			return fmt.Errorf("trustBundles.%s.endpoint: %w", td, err)
		}
		return nil
	}
	if err := a.creds.bundles.AddFile(name, src.File); err != nil {
		return fmt.Errorf("trustBundles.%s.file: %w", td, err)
	}
	return nil
}

// heldBundles is loadedBundles, made from the start's configuration the
// first time a reload needs it. Callers hold reloadMu.
func (a *Agent) heldBundles() map[string]config.BundleSource {
	if a.loadedBundles == nil {
		a.loadedBundles = maps.Clone(a.cfg.TrustBundles)
		if a.loadedBundles == nil {
			a.loadedBundles = map[string]config.BundleSource{}
		}
	}
	return a.loadedBundles
}

// withBundles is cur with the trust bundles of next that liveBundles
// applied.
func withBundles(cur, next *config.Config, applied []string) map[string]config.BundleSource {
	out := maps.Clone(cur.TrustBundles)
	for _, f := range applied {
		td := strings.TrimPrefix(f, "trustBundles.")
		if src, ok := next.TrustBundles[td]; ok {
			out[td] = src
		} else {
			delete(out, td)
		}
	}
	return out
}
