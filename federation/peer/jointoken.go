package peer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshfed/meshfed/hostname"
	"github.com/meshfed/meshfed/internal/untrusted"
)

// An invitation token (meshfed peer invite) is a JWS in compact form,
// signed with the inviting agent's SVID: its payload, Invitation, holds
// what the invited mesh needs to reach and trust the inviter, and a
// secret that proves the holder at the join endpoint. It holds no
// private key. Whoever holds it may join until it is used or expires, so
// it travels as a secret would.
//
// The signature makes any change to the token visible to the mesh that
// joins, before it connects anywhere: the payload names the CA bundle
// and the agent certificate chain that verify it. The inviter checks it
// again, against its own bundle, with the secret.

// InvitationVersion is the version of the token's payload.
const InvitationVersion = 1

// invitationType is the JWS typ of a token.
const invitationType = "meshfed-invitation"

// Bounds of what a token and a join carry: a few kilobytes in practice;
// the bounds keep what comes from elsewhere from costing much.
const (
	// MaxTokenBytes bounds a token: a bundle of 16 CAs and a chain of 4.
	MaxTokenBytes = 64 << 10
	maxBundleCAs  = 16
	maxChainCerts = 4
	maxIDs        = 16
	maxAddrs      = 8
	maxNameBytes  = 63
)

// DefaultInvitationTTL is how long an invitation is valid by default.
const DefaultInvitationTTL = time.Hour

// MaxInvitationTTL bounds an invitation's validity: a token that lies
// around for longer is more likely found by someone else.
const MaxInvitationTTL = 7 * 24 * time.Hour

// Invitation is the payload of a token.
type Invitation struct {
	Version int `json:"v"`
	// ID names the invitation in the inviter's store.
	ID string `json:"id"`
	// Secret is 32 random bytes, base64url; the inviter keeps only its
	// SHA-256.
	Secret string `json:"secret"`
	// Name is what the inviter calls the invited mesh (meshfed peer
	// invite NAME).
	Name string `json:"name"`
	// Mesh describes the inviter: how to reach and trust its agent.
	Mesh MeshInfo `json:"mesh"`
	// Join is the inviter's join endpoint, host:port.
	Join string `json:"join"`
	// Chain is the inviting agent's certificate chain (DER, base64), the
	// leaf first: its key signed the token.
	Chain     []string  `json:"chain"`
	IssuedAt  time.Time `json:"iat"`
	ExpiresAt time.Time `json:"exp"`
}

// MeshInfo is what one mesh tells another to become its peer: the token
// carries the inviter's, a join the joiner's and the answer the
// inviter's again (its bundle may have rotated since).
type MeshInfo struct {
	// Name is what the mesh calls itself: the name the other side gives
	// it unless told otherwise.
	Name        string `json:"name"`
	TrustDomain string `json:"trustDomain"`
	// Bundle is the trust domain's CA certificates, PEM.
	Bundle string `json:"bundle"`
	// AgentIDs are the SPIFFE IDs its agent presents.
	AgentIDs []string `json:"agentIds"`
	// Callers are the SPIFFE IDs its egress gateways present: the other
	// side's ingress admits only them.
	Callers []string `json:"callers,omitempty"`
	// Federation are the addresses (host:port) its agent accepts Hamlet
	// streams on.
	Federation []string `json:"federation,omitempty"`
	// BundleEndpoint, when set, serves the bundle: the other side follows
	// it, so that the CA can rotate.
	BundleEndpoint *BundleEndpointInfo `json:"bundleEndpoint,omitempty"`
}

// BundleEndpointInfo is a SPIFFE bundle endpoint.
type BundleEndpointInfo struct {
	URL string `json:"url"`
	// Profile is https_spiffe (the agent's SVID serves it) or https_web.
	Profile string `json:"profile"`
	// SPIFFEID is the server's ID, for https_spiffe.
	SPIFFEID string `json:"spiffeId,omitempty"`
}

// The reasons a token or a join is refused: the kinds meshfed tells apart
// on both sides, in ErrorInfo-like form.
const (
	ReasonMalformed   = "MALFORMED"    // not a token, or cut short
	ReasonAltered     = "ALTERED"      // the signature does not verify
	ReasonExpired     = "EXPIRED"      // past its expiry
	ReasonUsed        = "USED"         // used already
	ReasonUnknown     = "UNKNOWN"      // no such invitation at the inviter
	ReasonSecret      = "SECRET"       // the secret is not the invitation's
	ReasonConflict    = "CONFLICT"     // the name or trust domain is a peer already
	ReasonInvalid     = "INVALID"      // a field of the join is not valid
	ReasonRateLimited = "RATE_LIMITED" // too many joins
	ReasonUnavailable = "UNAVAILABLE"  // the inviter cannot apply the peer now
)

// TokenError is a token or a join refused, with its reason.
type TokenError struct {
	Reason string
	Msg    string
}

func (e *TokenError) Error() string { return e.Msg }

func tokenErr(reason, format string, args ...any) *TokenError {
	return &TokenError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// SignInvitation signs inv with the agent's SVID, whose chain it adds.
func SignInvitation(inv Invitation, svid *x509svid.SVID) (string, error) {
	alg, key, err := signingKey(svid.PrivateKey)
	if err != nil {
		return "", err
	}
	inv.Version = InvitationVersion
	inv.Chain = nil
	for _, c := range svid.Certificates {
		inv.Chain = append(inv.Chain, base64.StdEncoding.EncodeToString(c.Raw))
	}
	payload, err := json.Marshal(inv)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType(invitationType))
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// signingKey is the JWS algorithm of an SVID's key.
func signingKey(k crypto.Signer) (jose.SignatureAlgorithm, any, error) {
	switch key := k.(type) {
	case *ecdsa.PrivateKey:
		switch key.Curve {
		case elliptic.P256():
			return jose.ES256, key, nil
		case elliptic.P384():
			return jose.ES384, key, nil
		case elliptic.P521():
			return jose.ES512, key, nil
		}
	case *rsa.PrivateKey:
		return jose.PS256, key, nil
	case ed25519.PrivateKey:
		return jose.EdDSA, key, nil
	}
	return "", nil, fmt.Errorf("the agent's SVID key (%T) cannot sign an invitation", k)
}

var tokenAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.EdDSA}

// ReadInvitation decodes a token and verifies its signature against the
// bundle and agent IDs it carries: a token changed after it was issued is
// refused (ReasonAltered) before anything it names is trusted. It does
// not judge expiry: the inviter does, whose clock issued it.
func ReadInvitation(token string) (Invitation, error) {
	token = strings.TrimSpace(token)
	if len(token) > MaxTokenBytes {
		return Invitation{}, tokenErr(ReasonMalformed, "the token is %d bytes, more than a token holds (%d): it is not one", len(token), MaxTokenBytes)
	}
	jws, err := jose.ParseSignedCompact(token, tokenAlgorithms)
	if err != nil {
		return Invitation{}, tokenErr(ReasonMalformed, "this is not a meshfed invitation token (%v); copy the whole token that meshfed peer invite printed", err)
	}
	if len(jws.Signatures) != 1 || jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType] != invitationType {
		return Invitation{}, tokenErr(ReasonMalformed, "this is a JWS, but not a meshfed invitation token")
	}
	var inv Invitation
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &inv); err != nil {
		return Invitation{}, tokenErr(ReasonAltered, "the token was altered: its content does not decode (%s)", untrusted.Message(err.Error()))
	}
	if inv.Version != InvitationVersion {
		return Invitation{}, tokenErr(ReasonMalformed, "the token is of version %d; this meshfed reads version %d", inv.Version, InvitationVersion)
	}
	td, err := spiffeid.TrustDomainFromString(inv.Mesh.TrustDomain)
	if err != nil {
		return Invitation{}, tokenErr(ReasonAltered, "the token was altered: mesh.trustDomain %s: %v", untrusted.Quote(inv.Mesh.TrustDomain), err)
	}
	bundle, err := ParseBundle(td, inv.Mesh.Bundle)
	if err != nil {
		return Invitation{}, tokenErr(ReasonAltered, "the token was altered: mesh.bundle: %v", err)
	}
	id, leaf, err := verifyChain(inv.Chain, bundle)
	if err != nil {
		return Invitation{}, tokenErr(ReasonAltered, "the token was altered: the certificate that signed it does not verify against the bundle it carries: %v", err)
	}
	if !slices.Contains(inv.Mesh.AgentIDs, id.String()) {
		return Invitation{}, tokenErr(ReasonAltered, "the token was altered: it was signed by %s, which is none of the agent IDs it names", id)
	}
	if _, err := jws.Verify(leaf.PublicKey); err != nil {
		return Invitation{}, tokenErr(ReasonAltered, "the token was altered after %s signed it: its signature does not verify", id)
	}
	if err := inv.check(); err != nil {
		return Invitation{}, tokenErr(ReasonMalformed, "the token is not a valid invitation: %v", err)
	}
	return inv, nil
}

// VerifyIssuer checks that inv, read from a token, was signed by an agent
// of the trust domain whose bundle is given: the inviter's own.
func VerifyIssuer(token string, own x509bundle.Source) (Invitation, error) {
	inv, err := ReadInvitation(token)
	if err != nil {
		return Invitation{}, err
	}
	if _, _, err := verifyChainWith(inv.Chain, own); err != nil {
		return Invitation{}, tokenErr(ReasonAltered, "the token was not issued by this agent's trust domain: %v", err)
	}
	return inv, nil
}

func verifyChain(chain []string, bundle *x509bundle.Bundle) (spiffeid.ID, *x509.Certificate, error) {
	return verifyChainWith(chain, bundle)
}

func verifyChainWith(chain []string, bundles x509bundle.Source) (spiffeid.ID, *x509.Certificate, error) {
	if len(chain) == 0 || len(chain) > maxChainCerts {
		return spiffeid.ID{}, nil, fmt.Errorf("a chain of %d certificates (1 to %d)", len(chain), maxChainCerts)
	}
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		b, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return spiffeid.ID{}, nil, fmt.Errorf("chain[%d] is not base64", i)
		}
		raw[i] = b
	}
	id, verified, err := x509svid.ParseAndVerify(raw, bundles)
	if err != nil {
		return spiffeid.ID{}, nil, err
	}
	return id, verified[0][0], nil
}

// ParseBundle reads a bundle of PEM CA certificates of trust domain td,
// bounded in number.
func ParseBundle(td spiffeid.TrustDomain, pemCAs string) (*x509bundle.Bundle, error) {
	var cas []*x509.Certificate
	rest := []byte(pemCAs)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM block of type %s is not a certificate", untrusted.Quote(block.Type))
		}
		if len(cas) == maxBundleCAs {
			return nil, fmt.Errorf("more than %d CA certificates", maxBundleCAs)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(cas), err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%s) is not a CA", len(cas), untrusted.Quote(c.Subject.String()))
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, errors.New("no CA certificate")
	}
	return x509bundle.FromX509Authorities(td, cas), nil
}

// check refuses an invitation whose fields are out of shape.
func (inv Invitation) check() error {
	if err := checkName("name", inv.Name); err != nil {
		return err
	}
	if err := inv.Mesh.Check(); err != nil {
		return err
	}
	if len(inv.Mesh.Federation) == 0 {
		return errors.New("mesh.federation: no address to dial the inviter's agent at")
	}
	if err := checkHostPort("join", inv.Join); err != nil {
		return err
	}
	if inv.ID == "" || len(inv.ID) > 64 || inv.Secret == "" || len(inv.Secret) > 64 {
		return errors.New("id and secret: missing or too long")
	}
	if !inv.ExpiresAt.After(inv.IssuedAt) {
		return errors.New("exp: not after iat")
	}
	return nil
}

// Check refuses a mesh's description whose fields are out of shape or
// disagree (an agent ID or a caller of another trust domain): it comes
// from the network, and every field names where it is wrong.
func (m MeshInfo) Check() error {
	if err := checkName("mesh.name", m.Name); err != nil {
		return err
	}
	td, err := spiffeid.TrustDomainFromString(m.TrustDomain)
	if err != nil {
		return fmt.Errorf("mesh.trustDomain: %s: %v", untrusted.Quote(m.TrustDomain), err)
	}
	if _, err := ParseBundle(td, m.Bundle); err != nil {
		return fmt.Errorf("mesh.bundle: %v", err)
	}
	for _, f := range []struct {
		field string
		ids   []string
		need  bool
	}{{"mesh.agentIds", m.AgentIDs, true}, {"mesh.callers", m.Callers, false}} {
		if f.need && len(f.ids) == 0 {
			return fmt.Errorf("%s: none", f.field)
		}
		if len(f.ids) > maxIDs {
			return fmt.Errorf("%s: %d IDs, more than %d", f.field, len(f.ids), maxIDs)
		}
		for i, s := range f.ids {
			id, err := spiffeid.FromString(s)
			if err != nil {
				return fmt.Errorf("%s[%d]: %s: %v", f.field, i, untrusted.Quote(s), err)
			}
			if id.TrustDomain() != td {
				return fmt.Errorf("%s[%d]: %s is not in trust domain %s", f.field, i, untrusted.Quote(s), untrusted.Quote(m.TrustDomain))
			}
		}
	}
	if len(m.Federation) > maxAddrs {
		return fmt.Errorf("mesh.federation: %d addresses, more than %d", len(m.Federation), maxAddrs)
	}
	for i, a := range m.Federation {
		if err := checkHostPort(fmt.Sprintf("mesh.federation[%d]", i), a); err != nil {
			return err
		}
	}
	if e := m.BundleEndpoint; e != nil {
		if !strings.HasPrefix(e.URL, "https://") || len(e.URL) > 2048 {
			return fmt.Errorf("mesh.bundleEndpoint.url: %s is not an https URL", untrusted.Quote(e.URL))
		}
		switch e.Profile {
		case "https_web":
		case "https_spiffe":
			id, err := spiffeid.FromString(e.SPIFFEID)
			if err != nil || id.TrustDomain() != td {
				return fmt.Errorf("mesh.bundleEndpoint.spiffeId: %s is not a SPIFFE ID of %s", untrusted.Quote(e.SPIFFEID), untrusted.Quote(m.TrustDomain))
			}
		default:
			return fmt.Errorf("mesh.bundleEndpoint.profile: %s is not https_spiffe or https_web", untrusted.Quote(e.Profile))
		}
	}
	return nil
}

// checkName refuses a name that cannot be a peer's: one DNS label.
func checkName(field, name string) error {
	if why := hostname.Problem(name, hostname.Label); why != "" || strings.Contains(name, ".") || len(name) > maxNameBytes {
		if why == "" {
			why = "not one label"
		}
		return fmt.Errorf("%s: %s is not a peer name: one lower-case DNS label such as mesh-b (%s)", field, untrusted.Quote(name), why)
	}
	return nil
}

func checkHostPort(field, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil || n == 0 || len(addr) > 255 {
		return fmt.Errorf("%s: %s is not a host:port", field, untrusted.Quote(addr))
	}
	if _, ipErr := netip.ParseAddr(host); ipErr != nil {
		if why := hostname.Problem(host, hostname.LocalAddress); why != "" {
			return fmt.Errorf("%s: %s: the host is not an IP address or a host name (%s)", field, untrusted.Quote(addr), why)
		}
	}
	return nil
}
