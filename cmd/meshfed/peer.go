package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/federation/peer"
)

const peerLong = `Peer with another mesh in two commands, with no file copied by hand.

On the agent of mesh A:  meshfed peer invite mesh-b
prints a token: give it to the operator of mesh B (it is a secret).
On the agent of mesh B:  meshfed peer join TOKEN

The join makes B's agent contact A's join endpoint (federation.join) over
TLS verified against the bundle in the token, prove the token's secret,
and exchange bundles, identities and addresses. Each agent then holds the
other as a peer in a file of federation.peersDir (peers.d beside the
configuration: NAME.yaml and NAME.bundle.pem), which meshfed check reads,
and applies it at once by a reload; B dials A.

A token is good for one join, until it expires (--ttl, default 1h). The
inviting agent keeps only the SHA-256 of its secret, in
federation.peersDir/.invitations.`

func peerCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "peer",
		Short: "Invite another mesh, join one, list and remove the peers that joins added",
		Long:  peerLong,
	}
	c.AddCommand(peerInviteCmd(), peerJoinCmd(), peerListCmd(), peerRemoveCmd())
	return c
}

// loadPeerConfig is the configuration of --config, checked: the peer
// commands read and write beside it.
func loadPeerConfig(f *agentFlags) (*config.Config, string, error) {
	path := f.configPath()
	if path == "" {
		return nil, "", fmt.Errorf("--config: no %s here; name the agent's configuration file", defaultConfig)
	}
	cfg, err := config.Load(path)
	return cfg, path, err
}

// InviteResult is what meshfed peer invite -o json writes.
type InviteResult struct {
	Name      string    `json:"name"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expiresAt"`
	Join      string    `json:"join"`
	Token     string    `json:"token"`
}

func peerInviteCmd() *cobra.Command {
	var f agentFlags
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "invite NAME",
		Short: "Print a single-use token that lets another mesh join this one as peer NAME",
		Long: `Print a token that lets another mesh join this one, which will call it
NAME (one DNS label, such as mesh-b). The token holds this mesh's trust
domain, bundle, agent ID, federation and join addresses, and a secret; no
private key. It is good for one join until it expires (--ttl). Anyone who
holds it may join: hand it over as a secret. The agent's join endpoint
(federation.join.listen) must be on.

The token alone goes to standard output; what it is, to standard error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(f.output, "text", "json"); err != nil {
				return err
			}
			cfg, _, err := loadPeerConfig(&f)
			if err != nil {
				return err
			}
			svid, err := peer.LoadAgentSVID(c.Context(), cfg)
			if err != nil {
				return err
			}
			token, inv, err := peer.Invite(peer.InviteOptions{Config: cfg, Name: args[0], TTL: ttl, SVID: svid})
			if err != nil {
				return err
			}
			if f.output == "json" {
				return printAs(c.OutOrStdout(), "json", InviteResult{Name: inv.Name, ID: inv.ID, ExpiresAt: inv.ExpiresAt, Join: inv.Join, Token: token}, nil)
			}
			fmt.Fprintln(c.OutOrStdout(), token)
			fmt.Fprintf(c.ErrOrStderr(), "meshfed: invitation %s for %s, good for one join until %s; on the other mesh's agent: meshfed peer join TOKEN\n",
				inv.ID, inv.Name, inv.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	f.add(c, false)
	c.Flags().DurationVar(&ttl, "ttl", peer.DefaultInvitationTTL, "how long the token may be used (1m to 168h)")
	addOutput(c, &f.output, "text", "json")
	return c
}

// JoinResult is what meshfed peer join -o json writes.
type JoinResult struct {
	peer.Joined
	// Reload is the agent's answer, absent when it was not reached.
	Reload *agent.ReloadResult `json:"reload,omitempty"`
	// NotRunning says why the agent was not reloaded: it applies the peer
	// when it starts.
	NotRunning string `json:"notRunning,omitempty"`
}

func peerJoinCmd() *cobra.Command {
	var f agentFlags
	var name string
	c := &cobra.Command{
		Use:   "join TOKEN",
		Short: "Join the mesh that printed TOKEN (meshfed peer invite), and reload this agent",
		Long: `Join the mesh whose agent printed TOKEN with meshfed peer invite: contact
its join endpoint over TLS verified against the bundle in the token, with
this agent's SVID, and exchange bundles, identities and addresses. The
inviter is written to federation.peersDir as NAME (--name; default the
name it gives itself, the first label of its trust domain) and the
running agent reloads its configuration to apply it. TOKEN - reads the
token from standard input, which keeps it out of the process list.

A token that was altered, is used already, expired, or is not the one
issued is refused, each with its own message, here and in the inviting
agent's log.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(f.output, "table", "json", "yaml"); err != nil {
				return err
			}
			token := args[0]
			if token == "-" {
				b, err := io.ReadAll(io.LimitReader(c.InOrStdin(), peer.MaxTokenBytes+1))
				if err != nil {
					return err
				}
				token = string(b)
			}
			cfg, _, err := loadPeerConfig(&f)
			if err != nil {
				return err
			}
			svid, err := peer.LoadAgentSVID(c.Context(), cfg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context(), 30*time.Second)
			defer cancel()
			joined, err := peer.Join(ctx, peer.JoinOptions{Config: cfg, Token: token, Name: name, SVID: svid})
			if err != nil {
				return err
			}
			res := JoinResult{Joined: joined}
			res.Reload, res.NotRunning, err = reloadAgent(c.Context(), &f)
			if err != nil {
				return fmt.Errorf("joined %s as %s (%s), but the agent's reload failed: %w", joined.TrustDomain, joined.Name, joined.File, err)
			}
			return f.print(c.OutOrStdout(), res, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "joined %s: peer %s in %s, dialed at %s; it calls this mesh %s\n", joined.TrustDomain, joined.Name, joined.File, joined.Dial, joined.As)
				printReload(w, res.Reload, res.NotRunning)
			})
		},
	}
	f.add(c, true)
	c.Flags().StringVar(&name, "name", "", "what this mesh calls the inviter (default: the name it gives itself)")
	return c
}

// reloadAgent asks the agent to reload; an agent that does not run is no
// error (notRunning says so): it reads the peer files when it starts.
func reloadAgent(ctx context.Context, f *agentFlags) (*agent.ReloadResult, string, error) {
	cl, err := f.client()
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var res agent.ReloadResult
	if err := cl.Post(ctx, "/api/v1/reload", &res); err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Sprintf("no agent answers at %s: it applies the change when it starts", cl.BaseURL), nil
		}
		return nil, "", err
	}
	return &res, "", nil
}

func printReload(w io.Writer, res *agent.ReloadResult, notRunning string) {
	switch {
	case res == nil:
		fmt.Fprintln(w, notRunning)
	case len(res.NeedsRestart) > 0:
		fmt.Fprintf(w, "the agent reloaded; these fields take effect when it restarts: %s\n", strings.Join(res.NeedsRestart, ", "))
	default:
		fmt.Fprintln(w, "the agent reloaded and applied it")
	}
}

// PeerListResult is what meshfed peer list -o json writes.
type PeerListResult struct {
	// Peers are those of the configuration file and of
	// federation.peersDir.
	Peers []PeerView `json:"peers"`
	// Invitations are those issued and not used, expired ones included.
	Invitations []peer.PendingInvitation `json:"invitations"`
}

// PeerView is one peer as meshfed peer list shows it.
type PeerView struct {
	Name        string `json:"name"`
	TrustDomain string `json:"trustDomain"`
	Dial        string `json:"dial,omitempty"`
	// Source is the file it is written in.
	Source string `json:"source"`
}

func peerListCmd() *cobra.Command {
	var f agentFlags
	c := &cobra.Command{
		Use:   "list",
		Short: "List the peers (of the configuration and of federation.peersDir) and the invitations not used",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(f.output, "table", "json", "yaml"); err != nil {
				return err
			}
			cfg, path, err := loadPeerConfig(&f)
			if err != nil {
				return err
			}
			res, err := peerList(cfg, path, time.Now())
			if err != nil {
				return err
			}
			return f.print(c.OutOrStdout(), res, func(w *tabwriter.Writer) {
				if len(res.Peers) == 0 {
					none(w, "no peers")
				} else {
					fmt.Fprintln(w, "PEER\tTRUST DOMAIN\tDIAL\tFILE")
					for _, p := range res.Peers {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.TrustDomain, orDash(p.Dial), p.Source)
					}
				}
				if len(res.Invitations) > 0 {
					fmt.Fprintln(w, "\nINVITATION\tFOR\tEXPIRES\t")
					for _, i := range res.Invitations {
						exp := i.ExpiresAt.Format(time.RFC3339)
						if i.Expired {
							exp += " (expired)"
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t\n", i.ID, i.Name, exp)
					}
				}
			})
		},
	}
	f.add(c, true)
	return c
}

func peerList(cfg *config.Config, path string, now time.Time) (PeerListResult, error) {
	dir := cfg.Federation.PeersDir
	names, err := config.PeerFileNames(dir)
	if err != nil {
		return PeerListResult{}, err
	}
	res := PeerListResult{Peers: []PeerView{}, Invitations: []peer.PendingInvitation{}}
	for _, p := range cfg.Peers {
		src := path
		if slices.Contains(names, p.Name) {
			src = config.PeerFilePath(dir, p.Name)
		}
		res.Peers = append(res.Peers, PeerView{Name: p.Name, TrustDomain: p.TrustDomain, Dial: p.Dial, Source: src})
	}
	pending, err := peer.InvitationsOf(dir).Pending(now)
	if err != nil {
		return PeerListResult{}, err
	}
	res.Invitations = append(res.Invitations, pending...)
	return res, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RemoveResult is what meshfed peer remove -o json writes.
type RemoveResult struct {
	Name string `json:"name"`
	// File is the peer file removed.
	File string `json:"file"`
	// Withdrawn counts the invitations for the name that were not used
	// and are withdrawn.
	Withdrawn  int                 `json:"withdrawn"`
	Reload     *agent.ReloadResult `json:"reload,omitempty"`
	NotRunning string              `json:"notRunning,omitempty"`
}

func peerRemoveCmd() *cobra.Command {
	var f agentFlags
	c := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a peer that a join added, withdraw its invitations, and reload the agent",
		Long: `Remove peer NAME's file and bundle from federation.peersDir, withdraw the
invitations for NAME not used yet, and make the running agent reload: it
stops federating with NAME. A peer of the configuration file itself is
removed by editing that file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(f.output, "table", "json", "yaml"); err != nil {
				return err
			}
			cfg, path, err := loadPeerConfig(&f)
			if err != nil {
				return err
			}
			name := args[0]
			dir := cfg.Federation.PeersDir
			withdrawn, err := peer.InvitationsOf(dir).Withdraw(name)
			if err != nil {
				return err
			}
			err = config.RemovePeerFile(dir, name)
			switch {
			case errors.Is(err, os.ErrNotExist) && slices.ContainsFunc(cfg.Peers, func(p config.Peer) bool { return p.Name == name }):
				return fmt.Errorf("%s is a peer of %s, not of %s: edit that file to remove it", name, path, dir)
			case errors.Is(err, os.ErrNotExist) && withdrawn > 0:
			case errors.Is(err, os.ErrNotExist):
				return fmt.Errorf("%s: no peer %s there, and no invitation for it", dir, name)
			case err != nil:
				return err
			}
			res := RemoveResult{Name: name, Withdrawn: withdrawn}
			if err == nil {
				res.File = config.PeerFilePath(dir, name)
			}
			res.Reload, res.NotRunning, err = reloadAgent(c.Context(), &f)
			if err != nil {
				return fmt.Errorf("removed %s, but the agent's reload failed: %w", name, err)
			}
			return f.print(c.OutOrStdout(), res, func(w *tabwriter.Writer) {
				if res.File != "" {
					fmt.Fprintf(w, "removed peer %s (%s)\n", name, res.File)
				}
				if withdrawn > 0 {
					fmt.Fprintf(w, "withdrew %d invitation(s) for %s\n", withdrawn, name)
				}
				printReload(w, res.Reload, res.NotRunning)
			})
		},
	}
	f.add(c, true)
	return c
}
