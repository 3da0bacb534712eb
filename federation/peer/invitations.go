package peer

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/meshfed/meshfed/internal/untrusted"
)

// Invitations are the invitations an agent issued, in the folder
// .invitations of federation.peersDir: a file a token, ID.json while it
// may be used, ID.claimed while a join uses it, ID.used after. A file
// holds the SHA-256 of the token's secret, never the secret: whoever
// reads the folder cannot join with what they find there. (The secret is
// 32 random bytes, so a plain hash is as hard to reverse as the secret is
// to guess.) Used and expired files stay, so that a token used again or
// too late is told so, not that it is unknown.
type Invitations struct {
	Dir string
}

// InvitationsDir is the folder of the invitations within peersDir.
const InvitationsDir = ".invitations"

// InvitationsOf are the invitations kept in peersDir.
func InvitationsOf(peersDir string) Invitations {
	return Invitations{Dir: filepath.Join(peersDir, InvitationsDir)}
}

// The states of an invitation, the suffixes of its file.
const (
	statePending = ".json"
	stateClaimed = ".claimed"
	stateUsed    = ".used"
)

// invitationRecord is what an agent keeps of an invitation.
type invitationRecord struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	SecretSHA256 string    `json:"secretSha256"`
	IssuedAt     time.Time `json:"issuedAt"`
	ExpiresAt    time.Time `json:"expiresAt"`
}

// PendingInvitation is an invitation issued and not used, as meshfed peer
// list shows it.
type PendingInvitation struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	IssuedAt  time.Time `json:"issuedAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	Expired   bool      `json:"expired"`
}

// newInvitation fills the ID, the secret and the times of inv.
func newInvitation(inv *Invitation, now time.Time, ttl time.Duration) error {
	id := make([]byte, 12)
	secret := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	inv.ID = hex.EncodeToString(id)
	inv.Secret = base64.RawURLEncoding.EncodeToString(secret)
	inv.IssuedAt = now.UTC().Truncate(time.Second)
	inv.ExpiresAt = inv.IssuedAt.Add(ttl)
	return nil
}

// keep writes the record of inv, the secret hashed.
func (s Invitations) keep(inv Invitation) error {
	rec := invitationRecord{ID: inv.ID, Name: inv.Name, SecretSHA256: secretHash(inv.Secret), IssuedAt: inv.IssuedAt, ExpiresAt: inv.ExpiresAt}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("federation.peersDir: %w", err)
	}
	return os.WriteFile(s.path(inv.ID, statePending), append(b, '\n'), 0o600)
}

func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func (s Invitations) path(id, state string) string { return filepath.Join(s.Dir, id+state) }

// Claim takes invitation inv, read from a token, for one join: the
// secret must be the one issued, the invitation neither expired nor used.
// The refusals are *TokenError: UNKNOWN, SECRET, ALTERED, EXPIRED, USED.
// done ends the claim: used for good when the peer was added, else free
// again for another try.
func (s Invitations) Claim(inv Invitation, now time.Time) (done func(used bool), err error) {
	if !validID(inv.ID) {
		return nil, tokenErr(ReasonUnknown, "this agent issued no invitation %s", untrusted.Quote(inv.ID))
	}
	pending := s.path(inv.ID, statePending)
	b, err := os.ReadFile(pending)
	if errors.Is(err, fs.ErrNotExist) {
		for _, st := range []string{stateUsed, stateClaimed} {
			if fi, err := os.Stat(s.path(inv.ID, st)); err == nil {
				return nil, tokenErr(ReasonUsed, "the invitation %s for %s was used already, at %s; an invitation is good for one join: ask for a new one (meshfed peer invite)",
					inv.ID, inv.Name, fi.ModTime().UTC().Format(time.RFC3339))
			}
		}
		return nil, tokenErr(ReasonUnknown, "this agent has no invitation %s: it was not issued here, or removed", inv.ID)
	}
	if err != nil {
		return nil, err
	}
	var rec invitationRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("invitation %s: %w", pending, err)
	}
	want, _ := hex.DecodeString(rec.SecretSHA256)
	got, _ := hex.DecodeString(secretHash(inv.Secret))
	if len(want) != sha256.Size || subtle.ConstantTimeCompare(want, got) != 1 {
		return nil, tokenErr(ReasonSecret, "the token's secret is not that of invitation %s: the token is not the one issued", inv.ID)
	}
	if rec.Name != inv.Name || !rec.ExpiresAt.Equal(inv.ExpiresAt) {
		return nil, tokenErr(ReasonAltered, "the token was altered: invitation %s was issued for %s until %s", inv.ID, rec.Name, rec.ExpiresAt.Format(time.RFC3339))
	}
	if !now.Before(rec.ExpiresAt) {
		return nil, tokenErr(ReasonExpired, "the invitation %s for %s expired at %s; ask for a new one (meshfed peer invite)", inv.ID, inv.Name, rec.ExpiresAt.Format(time.RFC3339))
	}
	claimed := s.path(inv.ID, stateClaimed)
	// The rename is the claim: of two joins at once, one renames the
	// file, and the other finds it gone.
	if err := os.Rename(pending, claimed); errors.Is(err, fs.ErrNotExist) {
		return nil, tokenErr(ReasonUsed, "the invitation %s for %s is being used by another join", inv.ID, inv.Name)
	} else if err != nil {
		return nil, err
	}
	return func(used bool) {
		next := pending
		if used {
			next = s.path(inv.ID, stateUsed)
		}
		_ = os.Rename(claimed, next)
	}, nil
}

// validID is an ID newInvitation makes: hex, so never a path.
func validID(id string) bool {
	if len(id) != 24 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// Pending lists the invitations not used, the expired ones too, by
// expiry.
func (s Invitations) Pending(now time.Time) ([]PendingInvitation, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []PendingInvitation
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), statePending)
		if !ok || !validID(id) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var rec invitationRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("invitation %s: %w", e.Name(), err)
		}
		out = append(out, PendingInvitation{ID: rec.ID, Name: rec.Name, IssuedAt: rec.IssuedAt, ExpiresAt: rec.ExpiresAt, Expired: !now.Before(rec.ExpiresAt)})
	}
	slices.SortFunc(out, func(a, b PendingInvitation) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	return out, nil
}

// Withdraw removes the pending invitations for name, so that their
// tokens are refused (UNKNOWN); it returns how many it removed.
func (s Invitations) Withdraw(name string) (int, error) {
	pending, err := s.Pending(time.Now())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pending {
		if p.Name != name {
			continue
		}
		if err := os.Remove(s.path(p.ID, statePending)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		n++
	}
	return n, nil
}
