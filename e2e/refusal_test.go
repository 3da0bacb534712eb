package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/examples/twomesh"
	"github.com/meshfed/meshfed/model"
)

// Callers the owner does not admit are refused by its ingress gateway, and
// the exported service never sees their connection: a mesh the owner
// federates with but does not export the service to, and a mesh it does
// not know at all.
func TestIngressRefusesCallersOutsideConsumers(t *testing.T) {
	a, b := federate(t, options{otherPeers: []string{"mesh-c"}})
	root := filepath.Dir(a.Dir)
	require.NoError(t, twomesh.WriteCA(root, "mesh-d"))

	// The consumer itself gets through, with the same client: the refusals
	// below are about who calls.
	before := b.up.http.Accepted()
	require.NoError(t, directCall(t, b, root, "mesh-a", "/meshfed/gateway/egress"))
	require.Equal(t, before+1, b.up.http.Accepted())

	for _, caller := range []struct{ mesh, path, why, reason string }{
		{"mesh-a", "/ns/default/sa/intruder", "a workload of the consumer mesh that is not one of its callers", "caller not authorized"},
		{"mesh-c", "/meshfed/gateway/egress", "a peer the service is not exported to", "certificate not trusted"},
		{"mesh-d", "/meshfed/gateway/egress", "a trust domain the owner does not know", "certificate not trusted"},
	} {
		t.Run(caller.mesh+caller.path, func(t *testing.T) {
			before := b.up.http.Accepted()
			stats0 := ingressTLSStats(t, b)
			err := directCall(t, b, root, caller.mesh, caller.path)
			require.Error(t, err, caller.why)
			require.Equal(t, before, b.up.http.Accepted(), "the upstream saw no connection from %s", caller.mesh)
			eventually(t, "the ingress counts the refused handshake", func(ctx context.Context) error {
				if n := ingressTLSStats(t, b); n <= stats0 {
					return fmt.Errorf("ssl.connection_error + fail_verify_error + fail_verify_san = %d, was %d", n, stats0)
				}
				return nil
			})
			id := "spiffe://" + caller.mesh + ".example" + caller.path
			eventually(t, "the ingress access log names the refused caller and why", func(context.Context) error {
				for _, l := range accessLog(t, b.ingress) {
					if l["peer"] == id && l["tls_failure"] != nil && l["upstream"] == nil && l["reason"] == caller.reason {
						return nil
					}
				}
				return fmt.Errorf("no access log line of %s with a TLS failure and reason %q", id, caller.reason)
			})
		})
	}
}

// A connection to the ingress gateway for an SNI nobody exports, or with
// none, or that is not TLS, is closed before any export sees it, and the
// ingress access log says why.
func TestIngressClosesWhatNoExportTakes(t *testing.T) {
	_, b := federate(t, options{})
	root := filepath.Dir(b.Dir)
	for _, tc := range []struct{ name, sni, reason string }{
		{"unknown server name", "outbound_.8080_._.elsewhere.mesh-b.example", "no export has this server name"},
		{"no server name", "", "no server name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.up.http.Accepted()
			require.Error(t, callIngress(t, b, root, "mesh-a", "/meshfed/gateway/egress", tc.sni))
			require.Equal(t, before, b.up.http.Accepted())
			refusalLogged(t, b, tc.sni, tc.reason)
		})
	}
	t.Run("not TLS", func(t *testing.T) {
		conn, err := net.Dial("tcp", net.JoinHostPort(b.IP, strconv.FormatUint(uint64(b.IngressPort), 10)))
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		n, _ := conn.Read(make([]byte, 1))
		require.Zero(t, n, "closed without an answer")
		refusalLogged(t, b, "", "not TLS")
	})
}

// refusalLogged waits for a line of m's ingress TLS listener that refused
// a connection for sni (any, when empty) with reason, naming the caller's
// address.
func refusalLogged(t *testing.T, m *mesh, sni, reason string) {
	t.Helper()
	eventually(t, "the ingress access log has the refused connection", func(context.Context) error {
		for _, l := range accessLog(t, m.ingress) {
			if l["listener"] == "ingress/tls" && l["reason"] == reason && (sni == "" || l["sni"] == sni) && l["downstream"] != nil && l["upstream"] == nil {
				return nil
			}
		}
		return fmt.Errorf("no access log line of ingress/tls with reason %q", reason)
	})
}

// directCall calls, as the holder of an SVID of caller's CA with the given
// path, the HTTP port of the service owner exports, straight at the
// owner's ingress gateway (as a peer's egress gateway would), and reads the
// answer. It returns nil once an HTTP answer arrived.
func directCall(t *testing.T, owner *mesh, root, caller, path string) error {
	t.Helper()
	return callIngress(t, owner, root, caller, path, model.DefaultSNI(httpPort, owner.FQDN()))
}

// callIngress is directCall with the given SNI (none when empty).
func callIngress(t *testing.T, owner *mesh, root, caller, path, sni string) error {
	t.Helper()
	ca, err := certs.LoadCA(filepath.Join(root, caller, "certs"))
	require.NoError(t, err)
	id := spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(caller+".example"), path)
	svid, err := ca.IssueX509SVID(id, time.Hour)
	require.NoError(t, err)
	cert := tls.Certificate{PrivateKey: svid.PrivateKey}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(filepath.Join(owner.Dir, "certs", "bundle.pem"))
	require.NoError(t, err)
	require.True(t, roots.AppendCertsFromPEM(pem))

	addr := net.JoinHostPort(owner.IP, strconv.FormatUint(uint64(owner.IngressPort), 10))
	d := &tls.Dialer{Config: &tls.Config{
		ServerName: sni,
		// Present the certificate whatever CAs the server asks for, as a
		// caller trying its luck would.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		RootCAs:              roots,
		// The ingress presents a SPIFFE SVID, which has no DNS name.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	// With TLS 1.3 a refused client certificate shows on the first read.
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", owner.FQDN()); err != nil {
		return err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return fmt.Errorf("connection closed without an answer")
	}
	return nil
}

// ingressTLSStats adds the ingress listener's counters of failed TLS
// handshakes.
func ingressTLSStats(t *testing.T, m *mesh) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := m.ingress.Stats(ctx, "ssl")
	require.NoError(t, err)
	return st.Sum("listener.", ".ssl.connection_error") + st.Sum("listener.", ".ssl.fail_verify_error") + st.Sum("listener.", ".ssl.fail_verify_san")
}
