package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/preflight"
)

const liveLong = `With --live, it then tries the whole path from this host: for each peer
this mesh dials, the peer's agent is reached and mutual TLS completed with
this agent's SVID, the peer's bundle and its agent's SPIFFE IDs (the
bundle's age is shown); for each import the running agent holds, mutual
TLS is completed with each endpoint of the owner's ingress, with the
egress SVID and the import's server name, as the egress gateway does:
authorized, or the reason it was refused. A peer or an import that fails
is an error (exit status 1).`

// LiveResult is what meshfed check --live -o json writes: the findings of
// the files, then what each peer's agent and each import's ingress said.
type LiveResult struct {
	CheckResult
	Peers   []LivePeer   `json:"peers"`
	Imports []LiveImport `json:"imports"`
	// ImportsError says why the imports could not be listed (the agent
	// could not be asked).
	ImportsError string `json:"importsError,omitempty"`
}

// LivePeer is how a peer's agent answered this agent's identity.
type LivePeer struct {
	Name        string `json:"name"`
	TrustDomain string `json:"trustDomain"`
	// Address is peers[].dial; empty for a peer that dials this mesh,
	// which is then not checked from here.
	Address   string `json:"address,omitempty"`
	Reachable bool   `json:"reachable"`
	Handshake bool   `json:"handshake"`
	// Identity is the SPIFFE ID the peer's agent presented.
	Identity string `json:"identity,omitempty"`
	// BundleUpdated is when the peer's trust bundle file was last
	// written.
	BundleUpdated *time.Time `json:"bundleUpdated,omitempty"`
	Bundle        string     `json:"bundle,omitempty"`
	OK            bool       `json:"ok"`
	Reason        string     `json:"reason,omitempty"`
}

// LiveImport is how an owner's ingress answered this mesh's egress
// identity for one instance of an import.
type LiveImport struct {
	Peer     string `json:"peer"`
	Service  string `json:"service"`
	Instance string `json:"instance"`
	SNI      string `json:"sni"`
	Ingress  string `json:"ingress"`
	// Authorized says that the ingress completed mutual TLS with the
	// egress SVID and kept the connection.
	Authorized bool   `json:"authorized"`
	Identity   string `json:"identity,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// liveCheck is check, then a handshake with each peer's agent (this
// agent's SVID) and with each import's ingress (the egress SVID and the
// import's server name). A peer or an import that fails is an error.
func liveCheck(ctx context.Context, w io.Writer, path, agentURL, output string, timeout time.Duration) error {
	if err := checkOutput(output, "text", "json"); err != nil {
		return err
	}
	// The store is the running agent's, which holds its lock.
	r := preflight.Check(path, preflight.Options{SkipStore: true})
	res := LiveResult{CheckResult: CheckResult{Config: path, Findings: []FindingView{}}, Peers: []LivePeer{}, Imports: []LiveImport{}}
	for _, f := range r.Findings {
		res.Findings = append(res.Findings, FindingView{Severity: string(f.Severity), File: f.File, Line: f.Line, Field: f.Field, Message: f.Msg})
	}
	res.Errors, res.Warnings = len(r.Errors()), len(r.Warnings())
	failed := false
	if cfg := r.Config; cfg != nil && res.Errors == 0 {
		l := live{cfg: cfg, timeout: timeout}
		res.Peers = l.peers(ctx)
		var imports []agent.ImportView
		if err := (&agentFlags{config: path, url: agentURL}).get(ctx, "/api/v1/imports", &imports); err != nil {
			res.ImportsError = err.Error()
		} else {
			res.Imports = l.imports(ctx, imports)
		}
		failed = res.ImportsError != "" ||
			slices.ContainsFunc(res.Peers, func(p LivePeer) bool { return !p.OK && p.Address != "" }) ||
			slices.ContainsFunc(res.Imports, func(i LiveImport) bool { return !i.Authorized })
	}
	code := 0
	switch {
	case res.Errors > 0 || failed:
		code = 1
	case res.Warnings > 0:
		code = 2
	}
	if output == "json" {
		if err := printAs(w, "json", res, nil); err != nil {
			return err
		}
	} else {
		for _, f := range r.Findings {
			fmt.Fprintln(w, f)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		liveTable(tw, res)
		if err := tw.Flush(); err != nil {
			return err
		}
		switch code {
		case 1:
			fmt.Fprintf(w, "%s: %s, %s; live: %s\n", path, plural(res.Errors, "error"), plural(res.Warnings, "warning"), liveSummary(res))
		case 2:
			fmt.Fprintf(w, "%s: %s; live: ok\n", path, plural(res.Warnings, "warning"))
		default:
			fmt.Fprintf(w, "%s: ok; live: ok\n", path)
		}
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

func liveSummary(res LiveResult) string {
	var bad []string
	for _, p := range res.Peers {
		if !p.OK && p.Address != "" {
			bad = append(bad, "peer "+p.Name)
		}
	}
	for _, i := range res.Imports {
		if !i.Authorized {
			bad = append(bad, "import "+i.Peer+"/"+i.Service+"/"+i.Instance)
		}
	}
	if res.ImportsError != "" {
		bad = append(bad, "imports not listed")
	}
	if len(bad) == 0 {
		return "ok"
	}
	return "failed: " + strings.Join(bad, ", ")
}

func liveTable(w *tabwriter.Writer, res LiveResult) {
	fmt.Fprintln(w, "PEER\tADDRESS\tREACHABLE\tHANDSHAKE\tIDENTITY\tBUNDLE AGE\tRESULT")
	if len(res.Peers) == 0 {
		none(w, "no peers")
	}
	for _, p := range res.Peers {
		age := "-"
		if p.BundleUpdated != nil {
			age = ago(*p.BundleUpdated)
		}
		result := "ok"
		if !p.OK {
			result = p.Reason
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, dash(p.Address), yesNo(p.Address, p.Reachable), yesNo(p.Address, p.Handshake), dash(p.Identity), age, result)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "IMPORT\tINSTANCE\tINGRESS\tSNI\tRESULT")
	switch {
	case res.ImportsError != "":
		fmt.Fprintf(w, "(not listed: %s)\n", res.ImportsError)
	case len(res.Imports) == 0:
		none(w, "no imports")
	}
	for _, i := range res.Imports {
		result := "authorized"
		if !i.Authorized {
			result = i.Reason
		}
		fmt.Fprintf(w, "%s/%s\t%s\t%s\t%s\t%s\n", i.Peer, i.Service, i.Instance, dash(i.Ingress), dash(i.SNI), result)
	}
}

func yesNo(address string, v bool) string {
	switch {
	case address == "":
		return "-"
	case v:
		return "yes"
	}
	return "no"
}

// live holds what the handshakes of check --live share.
type live struct {
	cfg     *config.Config
	timeout time.Duration
}

// bundle loads the trust bundle of td as the agent would: its file, or
// the latest one fetched from its endpoint (else the bootstrap bundle),
// with when it was written.
func (l live) bundle(td string) (*x509bundle.Bundle, string, time.Time, error) {
	src, ok := l.cfg.TrustBundles[td]
	if !ok {
		return nil, "", time.Time{}, fmt.Errorf("trustBundles has no bundle for %s", td)
	}
	path := src.File
	if e := src.Endpoint; e != nil {
		path = l.cfg.SavedBundlePath(td)
		if _, err := os.Stat(path); err != nil && e.BootstrapBundle != "" {
			path = e.BootstrapBundle
		}
	}
	b, err := certs.LoadBundleFile(spiffeid.RequireTrustDomainFromString(td), path)
	if err != nil {
		return nil, path, time.Time{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, path, time.Time{}, err
	}
	return b.X509Bundle(), path, fi.ModTime(), nil
}

// agentSVID is the agent's SVID as the agent takes it: from the Workload
// API when identity.workloadAPI is set (one fetch, within the timeout),
// else from its files.
func (l live) agentSVID(ctx context.Context) (*x509svid.SVID, error) {
	addr := l.cfg.Identity.WorkloadAPI
	if addr == "" {
		return l.svid("identity.agent", l.cfg.Identity.Agent)
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	td := spiffeid.RequireTrustDomainFromString(l.cfg.TrustDomain)
	src, err := certs.NewWorkloadSVIDSource(ctx, certs.WorkloadSVIDConfig{Role: model.Agent, Addr: addr, TrustDomain: td}, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("identity.workloadAPI %s: %w", addr, err)
	}
	defer src.Close()
	return src.GetX509SVID()
}

// svid loads this mesh's SVID of a role from its files.
func (l live) svid(field string, f *config.Files) (*x509svid.SVID, error) {
	if f == nil {
		return nil, fmt.Errorf("%s: no certificate and key files", field)
	}
	cert, err := certs.ReadFile(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("%s.cert: %w", field, err)
	}
	key, err := certs.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("%s.key: %w", field, err)
	}
	s, err := x509svid.Parse(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return s, nil
}

func (l live) peers(ctx context.Context) []LivePeer {
	out := []LivePeer{}
	agentSVID, svidErr := l.agentSVID(ctx)
	for _, p := range l.cfg.Peers {
		v := LivePeer{Name: p.Name, TrustDomain: p.TrustDomain, Address: p.Dial}
		b, path, updated, err := l.bundle(p.TrustDomain)
		if err == nil {
			v.Bundle, v.BundleUpdated = path, &updated
		}
		switch {
		case p.Dial == "":
			v.Reason = "not dialed from here: it dials this mesh"
		case err != nil:
			v.Reason = "its trust bundle: " + err.Error()
		case svidErr != nil:
			v.Reason = svidErr.Error()
		default:
			authorize := tlsconfig.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString(p.TrustDomain))
			if !p.AnyIDInTrustDomain {
				ids := make([]spiffeid.ID, 0, len(p.SPIFFEIDs))
				for _, s := range p.SPIFFEIDs {
					ids = append(ids, spiffeid.RequireFromString(s))
				}
				authorize = tlsconfig.AuthorizeOneOf(ids...)
			}
			tc := certs.ClientTLSConfig(agentSVID, b, authorize)
			// Hamlet is gRPC, which takes HTTP/2 only.
			tc.NextProtos = []string{"h2"}
			hs := l.handshake(ctx, p.Dial, tc)
			v.Reachable, v.Handshake, v.Identity, v.Reason = hs.reachable, hs.err == nil, hs.identity, hs.reason()
			v.OK = hs.err == nil
		}
		out = append(out, v)
	}
	return out
}

func (l live) imports(ctx context.Context, imports []agent.ImportView) []LiveImport {
	out := []LiveImport{}
	egress, svidErr := l.svid("identity.egress", l.cfg.Identity.Egress)
	for _, imp := range imports {
		td := ""
		for _, p := range l.cfg.Peers {
			if p.Name == imp.Peer {
				td = p.TrustDomain
			}
		}
		for _, r := range imp.Routes {
			eps := r.Endpoints
			if len(eps) == 0 {
				out = append(out, LiveImport{Peer: imp.Peer, Service: imp.Name, Instance: r.Instance, SNI: r.SNI, Reason: "the owner gave no endpoint"})
				continue
			}
			for _, e := range eps {
				v := LiveImport{Peer: imp.Peer, Service: imp.Name, Instance: r.Instance, SNI: r.SNI, Ingress: net.JoinHostPort(e.Address, strconv.FormatUint(uint64(e.Port), 10))}
				var b *x509bundle.Bundle
				var err error
				if td == "" {
					err = fmt.Errorf("%s is not a peer of this configuration", imp.Peer)
				} else if b, _, _, err = l.bundle(td); err != nil {
					err = fmt.Errorf("the owner's trust bundle: %w", err)
				}
				switch {
				case err != nil:
					v.Reason = err.Error()
				case svidErr != nil:
					v.Reason = svidErr.Error()
				default:
					authorize := tlsconfig.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString(td))
					if len(imp.SANs) > 0 {
						authorize = authorizeSANs(imp.SANs)
					}
					tc := certs.ClientTLSConfig(egress, b, authorize)
					tc.ServerName = r.SNI
					hs := l.handshake(ctx, v.Ingress, tc)
					v.Authorized, v.Identity, v.Reason = hs.err == nil, hs.identity, hs.reason()
				}
				out = append(out, v)
			}
		}
	}
	return out
}

// authorizeSANs admits a server that presents one of sans, as the egress
// gateway's exact URI SAN matchers do.
func authorizeSANs(sans []string) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if slices.Contains(sans, id.String()) {
			return nil
		}
		return fmt.Errorf("it presented %s, which is none of the service's sans %v", id, sans)
	}
}

// handshaken is how a handshake went.
type handshaken struct {
	reachable bool
	identity  string
	// refused says that the other side ended the handshake (err is its
	// alert); otherwise err, if any, is this side's.
	refused bool
	err     error
}

func (h handshaken) reason() string {
	switch {
	case h.err == nil:
		return ""
	case !h.reachable:
		return "unreachable: " + h.err.Error()
	case h.refused:
		return "refused this mesh: " + h.err.Error()
	}
	return "not trusted here: " + h.err.Error()
}

// handshake completes TLS with addr under tc. TLS 1.2 comes first: there
// the server checks the client's certificate before the handshake ends,
// so a refusal is the handshake's error. A server that takes TLS 1.3 only
// is tried again with it, and then a refusal arrives as an alert after
// the handshake, which a read waits for.
func (l live) handshake(ctx context.Context, addr string, tc *tls.Config) handshaken {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	h := l.try(ctx, addr, tc, tls.VersionTLS12)
	if h.err != nil && h.refused && strings.Contains(h.err.Error(), "protocol version") {
		h = l.try(ctx, addr, tc, tls.VersionTLS13)
	}
	return h
}

func (l live) try(ctx context.Context, addr string, tc *tls.Config, version uint16) handshaken {
	var h handshaken
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		h.err = err
		return h
	}
	h.reachable = true
	defer raw.Close()
	tc = tc.Clone()
	tc.MinVersion, tc.MaxVersion = version, version
	conn := tls.Client(raw, tc)
	err = conn.HandshakeContext(ctx)
	if err == nil {
		if chain := conn.ConnectionState().PeerCertificates; len(chain) > 0 {
			if id, idErr := x509svid.IDFromCert(chain[0]); idErr == nil {
				h.identity = id.String()
			}
		}
		if version == tls.VersionTLS13 {
			err = afterHandshake(ctx, conn)
		}
	}
	if err != nil {
		h.err = err
		closed := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
		h.refused = strings.HasPrefix(err.Error(), "remote error:") || closed
		if closed {
			h.err = errors.New("it closed the connection in the handshake: no export has this server name, or this mesh's certificate was refused")
		}
	}
	return h
}

// afterHandshake waits, until ctx ends, for a TLS 1.3 server to refuse
// the client's certificate; a connection still open then was accepted.
func afterHandshake(ctx context.Context, conn *tls.Conn) error {
	deadline, _ := ctx.Deadline()
	if err := conn.SetReadDeadline(deadline); err != nil {
		return err
	}
	_, err := conn.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}
