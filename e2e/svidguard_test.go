package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/agent"
	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/model"
)

// mesh-b's ingress SVID is overwritten while requests cross it, each over
// a new mutual TLS connection (a TCP import) and over HTTP: with an
// expired SVID, with a key that is not the certificate's, and with a new
// certificate and key written as two renames in either order. No request
// fails: a refused SVID never reaches the gateway, which keeps presenting
// the last good one, and the pair written as two files is taken as one
// change. While a refused file is in place, meshfed status exits with 2
// and /readyz says which file and why; a good one written back ends it.
func TestWorseSVIDNeverReachesTheGateway(t *testing.T) {
	a, b := federate(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	toB := a.importedTCPAddr(t)
	tcp := startLoop(t, "mesh-a to payments over TCP", func(ctx context.Context) error { return echoTCP(ctx, toB) })
	web := startLoop(t, "mesh-a to payments over HTTP", func(ctx context.Context) error { _, err := a.importedHTTP(ctx, "/svid"); return err })
	tcp.waitOK(t, 5)
	web.waitOK(t, 5)
	refusals := watchRefusals(t, b)
	f := ingressFiles(t, b)
	serial := b.serial(t, model.Ingress)
	require.NoError(t, hasSerial(ctx, b.ingress, serial))
	ingressPEM := filepath.Join(b.CertsDir(), "ingress.pem")

	// An expired SVID: refused, reported, and the gateway keeps the last
	// good one until a good one is written.
	expired := time.Now().Add(-time.Hour)
	f.write(f.issue(certs.WithValidity(expired.Add(-time.Hour), expired)))
	readyz := ""
	eventually(t, "mesh-b's status and /readyz report the expired file", func(ctx context.Context) error {
		st := agentStatus(ctx, t, b)
		if len(st.Problems()) == 0 {
			return fmt.Errorf("no problem in the status")
		}
		var err error
		readyz, err = b.readyz(ctx)
		if err != nil {
			return err
		}
		if !strings.Contains(readyz, "degraded: identity.ingress: an SVID was refused") {
			return fmt.Errorf("/readyz: %s", readyz)
		}
		return nil
	})
	require.True(t, strings.HasPrefix(readyz, "ok\n"), "still ready: %s", readyz)
	require.Contains(t, readyz, ") expired at "+expired.UTC().Format(time.RFC3339)+" (in "+ingressPEM+"); the last good one (serial "+serial+",")
	problems := agentStatus(ctx, t, b).Problems()
	require.Len(t, problems, 1, "status exits with 2 for this reason alone: %v", problems)
	require.Contains(t, problems[0], "identity.ingress: an SVID was refused since ")
	require.NoError(t, hasSerial(ctx, b.ingress, serial), "the gateway still presents the last good SVID")
	tcp.waitOK(t, 20) // a second of new connections with the expired file in place
	good := f.issue()
	f.write(good)
	serial = serialOf(t, good.chain)
	eventually(t, "a good SVID ends the report and reaches the gateway", func(ctx context.Context) error {
		if p := agentStatus(ctx, t, b).Problems(); len(p) > 0 {
			return fmt.Errorf("problems: %v", p)
		}
		if r, err := b.readyz(ctx); err != nil || r != "ok\n" {
			return fmt.Errorf("/readyz: %q, %v", r, err)
		}
		return hasSerial(ctx, b.ingress, serial)
	})

	// A key that is not the certificate's: refused once it has stayed so
	// for the settle time.
	f.writeKey(f.issue().key)
	eventually(t, "the mismatched key is refused", func(ctx context.Context) error {
		if st := svidOf(agentStatus(ctx, t, b), "ingress"); !strings.Contains(st.Refused, "leaf certificate does not match private key") {
			return fmt.Errorf("ingress SVID: %+v", st)
		}
		return nil
	})
	require.NoError(t, hasSerial(ctx, b.ingress, serial))
	tcp.waitOK(t, 20)
	good = f.issue()
	f.write(good)
	serial = serialOf(t, good.chain)
	eventually(t, "a good pair ends the refusal", func(ctx context.Context) error {
		if p := agentStatus(ctx, t, b).Problems(); len(p) > 0 {
			return fmt.Errorf("problems: %v", p)
		}
		return hasSerial(ctx, b.ingress, serial)
	})
	refused := len(refusals.all())

	// A rotation as two renames, in either order, half a second apart: one
	// change, never refused.
	for _, certFirst := range []bool{true, false} {
		next := f.issue()
		first, second := func() { f.writeKey(next.key) }, func() { f.writeCert(next.chain) }
		if certFirst {
			first, second = second, first
		}
		first()
		time.Sleep(500 * time.Millisecond)
		second()
		serial = serialOf(t, next.chain)
		eventually(t, "the rotated SVID reaches the gateway", func(ctx context.Context) error { return hasSerial(ctx, b.ingress, serial) })
	}
	// Past the settle time of the last half-written pair.
	time.Sleep(3 * time.Second)
	require.Len(t, refusals.all(), refused, "no refusal during the rotations: %v", refusals.all())
	require.Empty(t, agentStatus(ctx, t, b).Problems())
	failures := b.metric(ctx, t, `meshfed_certs_load_failures_total{kind="svid",name="ingress"}`)
	require.Equal(t, "2", failures, "the expired SVID and the mismatched key, each counted once")

	tcp.end()
	web.end()
	okTCP, failedTCP := tcp.counts()
	okWeb, failedWeb := web.counts()
	t.Logf("requests: %d over new TCP connections, %d failed; %d over HTTP, %d failed; refusals seen: %d", okTCP+failedTCP, failedTCP, okWeb+failedWeb, failedWeb, refused)
	require.Zero(t, failedTCP, "last error: %v", tcp.err())
	require.Zero(t, failedWeb, "last error: %v", web.err())
}

// pair is an SVID's chain and key.
type pair struct {
	chain []byte
	key   certs.PrivateKeyPEM
}

// svidFiles writes one role's SVID files of a mesh.
type svidFiles struct {
	t    *testing.T
	ca   *certs.CA
	id   spiffeid.ID
	cert string
	key  string
}

func ingressFiles(t *testing.T, m *mesh) svidFiles {
	ca, err := certs.LoadCA(m.CertsDir())
	require.NoError(t, err)
	id, err := certs.RoleID(spiffeid.RequireTrustDomainFromString(m.TrustDomain()), model.Ingress)
	require.NoError(t, err)
	return svidFiles{t: t, ca: ca, id: id, cert: filepath.Join(m.CertsDir(), "ingress.pem"), key: filepath.Join(m.CertsDir(), "ingress-key.pem")}
}

func (f svidFiles) issue(opts ...certs.CertOption) pair {
	chain, key, err := f.ca.Issue(f.id, 0, opts...)
	require.NoError(f.t, err)
	return pair{chain, key}
}

// write puts a pair in place as the development CA does: the key, then
// the certificate, each by a rename, one right after the other.
func (f svidFiles) write(p pair) {
	f.writeKey(p.key)
	f.writeCert(p.chain)
}

func (f svidFiles) writeKey(key certs.PrivateKeyPEM) { f.rename(f.key, key, 0o600) }
func (f svidFiles) writeCert(chain []byte)           { f.rename(f.cert, chain, 0o644) }

func (f svidFiles) rename(path string, data []byte, mode os.FileMode) {
	tmp := path + ".next"
	require.NoError(f.t, os.WriteFile(tmp, data, mode))
	require.NoError(f.t, os.Rename(tmp, path))
}

// serialOf is the serial number, in hex, of the leaf of chain.
func serialOf(t *testing.T, chain []byte) string {
	t.Helper()
	block, _ := pem.Decode(chain)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return fmt.Sprintf("%x", c.SerialNumber)
}

// echoTCP sends a line over a new connection to addr and reads it back.
func echoTCP(ctx context.Context, addr string) error {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping\n" {
		return fmt.Errorf("echo: %q", buf)
	}
	return nil
}

// agentStatus is m's agent's status, as meshfed status reads it.
func agentStatus(ctx context.Context, t *testing.T, m *mesh) agent.Status {
	t.Helper()
	var s agent.Status
	require.NoError(t, m.adminClient().Get(ctx, "/api/v1/status", &s))
	return s
}

func svidOf(s agent.Status, role string) agent.SVIDStatus {
	for _, v := range s.SVIDs {
		if v.Role == role {
			return v
		}
	}
	return agent.SVIDStatus{}
}

// readyz is m's agent's /readyz body; an error unless it answers 200.
func (m *mesh) readyz(ctx context.Context) (string, error) {
	return m.adminGet(ctx, "/readyz")
}

func (m *mesh) adminGet(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.agent.AdminAddr().String()+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), nil
}

// metric is the value of one sample of m's agent's /metrics, as written.
func (m *mesh) metric(ctx context.Context, t *testing.T, sample string) string {
	t.Helper()
	body, err := m.adminGet(ctx, "/metrics")
	require.NoError(t, err)
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			return v
		}
	}
	return ""
}

// refusalLog collects every distinct refusal of an SVID of m's agent.
type refusalLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *refusalLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}

// watchRefusals reads m's SVID states every 10 ms until the test ends: a
// refusal stays until a good SVID loads.
func watchRefusals(t *testing.T, m *mesh) *refusalLog {
	l := &refusalLog{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, s := range m.agent.Identity().SVIDStates() {
				if s.Refused == "" {
					continue
				}
				l.mu.Lock()
				if n := len(l.seen); n == 0 || l.seen[n-1] != s.Refused {
					l.seen = append(l.seen, s.Refused)
				}
				l.mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return l
}
