package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/envoyrun"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
)

// An SNI is bytes a caller chooses. Whatever server name a ClientHello
// without a client certificate carries (the name of every cluster the
// ingress holds, of the agent's xDS cluster, and 200 made up), the
// plaintext that follows reaches no backend and not even the router, and
// the ingress logs each connection with the reason it refused it.
func TestNoServerNameOpensTheIngressWithoutAHandshake(t *testing.T) {
	_, b := federate(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	names := ingressClusterNames(ctx, t, b.ingress)
	require.Contains(t, names, snapshot.IngressRouterName)
	names = append(names, "meshfed-xds")
	names = append(names, madeUpServerNames(b, names)...)

	upstreams := func() [3]int64 { return [3]int64{b.up.http.Accepted(), b.up.grpc.Accepted(), b.up.tcp.Accepted()} }
	before := upstreams()
	routed0 := routerConnections(ctx, t, b.ingress)
	sent := map[string]string{} // the client's address → the name it sent
	var open []string
	for _, name := range names {
		addr, closed := helloThenPlaintext(t, b, name)
		sent[addr] = name
		if !closed {
			open = append(open, name)
		}
	}
	require.Equal(t, before, upstreams(), "no backend accepted a connection")
	require.Equal(t, routed0, routerConnections(ctx, t, b.ingress), "no connection reached the router")
	require.Empty(t, open, "the ingress closed the connection of every server name")

	eventually(t, "the ingress logs every connection with the reason it refused it", func(context.Context) error {
		reasons := map[string]string{}
		for _, l := range accessLog(t, b.ingress) {
			if l["listener"] == snapshot.IngressTLSName {
				reasons[fmt.Sprint(l["downstream"])], _ = l["reason"].(string)
			}
		}
		for addr, name := range sent {
			if reasons[addr] == "" {
				return fmt.Errorf("no refusal logged for %s, server name %q", addr, name)
			}
		}
		return nil
	})
}

// ingressClusterNames are the names of every cluster the Envoy holds, from
// its own config_dump: those served and those of its bootstrap.
func ingressClusterNames(ctx context.Context, t *testing.T, e *envoyrun.Envoy) []string {
	t.Helper()
	d, err := e.ConfigDump(ctx, "resource=dynamic_active_clusters")
	require.NoError(t, err)
	static, err := e.ConfigDump(ctx, "resource=static_clusters")
	require.NoError(t, err)
	var names []string
	for _, cfg := range append(d.GetConfigs(), static.GetConfigs()...) {
		var c cluster.Cluster
		switch {
		case cfg.MessageIs(&adminv3.ClustersConfigDump_DynamicCluster{}):
			var dc adminv3.ClustersConfigDump_DynamicCluster
			require.NoError(t, cfg.UnmarshalTo(&dc))
			require.NoError(t, dc.GetCluster().UnmarshalTo(&c))
		case cfg.MessageIs(&adminv3.ClustersConfigDump_StaticCluster{}):
			var sc adminv3.ClustersConfigDump_StaticCluster
			require.NoError(t, cfg.UnmarshalTo(&sc))
			require.NoError(t, sc.GetCluster().UnmarshalTo(&c))
		default:
			t.Fatalf("config dump holds a %s", cfg.GetTypeUrl())
		}
		names = append(names, c.GetName())
	}
	require.NotEmpty(t, names)
	return names
}

// routerConnections is how many connections the ingress ever made to its
// router.
func routerConnections(ctx context.Context, t *testing.T, e *envoyrun.Envoy) uint64 {
	t.Helper()
	stats, err := e.Stats(ctx, "cluster."+snapshot.IngressRouterName+".upstream_cx_total")
	require.NoError(t, err)
	return stats.Sum("cluster."+snapshot.IngressRouterName+".upstream_cx_total", "")
}

// madeUpServerNames are 200 server names an attacker might try on the
// ingress of owner, some close to the ones it serves: in other letter
// cases, with a trailing dot, with slashes, 255 bytes long, empty, or
// none at all (the empty string, which helloThenPlaintext sends without
// the extension).
func madeUpServerNames(owner *mesh, clusters []string) []string {
	r := mrand.New(mrand.NewPCG(1, 2))
	exported := []string{model.DefaultSNI(httpPort, owner.FQDN()), model.DefaultSNI(grpcPort, owner.FQDN()), model.DefaultSNI(tcpPort, owner.FQDN())}
	known := append(exported, clusters...)
	pick := func() string { return known[r.IntN(len(known))] }
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/:%"
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[r.IntN(len(letters))]
		}
		return string(b)
	}
	names := []string{"", emptyServerName, strings.Repeat("a", 255), strings.Repeat("b", 63) + "." + strings.Repeat("c", 191)}
	for len(names) < 200 {
		switch len(names) % 8 {
		case 0:
			names = append(names, strings.ToUpper(pick()))
		case 1:
			n := []byte(pick())
			for i := range n {
				if r.IntN(2) == 0 {
					n[i] = bytes.ToUpper(n[i : i+1])[0]
				}
			}
			names = append(names, string(n))
		case 2:
			names = append(names, pick()+".")
		case 3:
			names = append(names, "ingress/"+word(1+r.IntN(30)))
		case 4:
			names = append(names, pick()+"/"+word(r.IntN(10)))
		case 5:
			names = append(names, word(200+r.IntN(56)))
		case 6:
			b := make([]byte, 1+r.IntN(60))
			for i := range b {
				b[i] = byte(1 + r.IntN(255)) // anything but NUL
			}
			names = append(names, string(b))
		case 7:
			names = append(names, word(1+r.IntN(40)))
		}
	}
	return names
}

// emptyServerName stands for a server_name extension whose name is empty.
const emptyServerName = "\x00empty"

// helloThenPlaintext sends owner's ingress a TLS ClientHello with server
// name sni, then plaintext bytes instead of the rest of a handshake, reads
// whatever comes back until the ingress closes the connection (closed),
// or for 10 seconds, and returns the client's address.
func helloThenPlaintext(t *testing.T, owner *mesh, sni string) (addr string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort(owner.IP, strconv.FormatUint(uint64(owner.IngressPort), 10)))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Write(clientHello(sni))
	require.NoError(t, err)
	// The ingress may close as soon as it read the ClientHello.
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: backend\r\n\r\nPING\r\n")
	_, err = io.Copy(io.Discard, c)
	return c.LocalAddr().String(), !errors.Is(err, os.ErrDeadlineExceeded)
}

// clientHello is a TLS 1.2 ClientHello offering ECDSA and RSA suites, with
// sni in a server_name extension (none when sni is empty): built by hand,
// since a TLS library refuses or rewrites most of the names a hostile
// client sends.
func clientHello(sni string) []byte {
	var ext []byte
	u16 := func(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
	if sni != "" {
		name := []byte(sni)
		if sni == emptyServerName {
			name = nil
		}
		ext = u16(ext, 0x0000) // server_name
		ext = u16(ext, len(name)+5)
		ext = u16(ext, len(name)+3)
		ext = append(ext, 0) // host_name
		ext = u16(ext, len(name))
		ext = append(ext, name...)
	}
	ext = append(ext, 0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x1d)             // supported_groups: P-256, X25519
	ext = append(ext, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00)                                     // ec_point_formats: uncompressed
	ext = append(ext, 0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01) // signature_algorithms

	var body []byte
	body = append(body, 0x03, 0x03) // TLS 1.2
	random := make([]byte, 32)
	_, _ = rand.Read(random)
	body = append(body, random...)
	body = append(body, 0) // no session id
	suites := []int{0xc02b, 0xc02f, 0xc02c, 0xc030}
	body = u16(body, 2*len(suites))
	for _, s := range suites {
		body = u16(body, s)
	}
	body = append(body, 1, 0) // no compression
	body = u16(body, len(ext))
	body = append(body, ext...)

	hs := append([]byte{0x01, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	rec := append([]byte{0x16, 0x03, 0x01}, byte(len(hs)>>8), byte(len(hs)))
	return append(rec, hs...)
}

// A workload that writes its request and half-closes its connection gets
// the whole answer, which the service sends only after the request ended:
// through both gateways, in terminate mode and in passthrough mode (where
// the service ends the consumer's mutual TLS itself), both ways.
func TestHalfCloseCrossesTheIngress(t *testing.T) {
	prepare := func(m *mesh) {
		plain, err := upstream.TCPAtEOF("answers", "")
		require.NoError(t, err)
		svid := m.workloadSVID(t, "/ns/default/sa/sealed")
		caller := spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString(m.peer.TrustDomain()), "/meshfed/gateway/egress")
		sealed, err := upstream.TLSAtEOF("sealed", "", tlsconfig.MTLSServerConfig(svid, m.peer.bundle(t), tlsconfig.AuthorizeID(caller)))
		require.NoError(t, err)
		t.Cleanup(func() {
			require.NoError(t, plain.Close())
			require.NoError(t, sealed.Close())
		})
		m.ExtraServices = fmt.Sprintf(`  - name: answers
    fqdn: answers.%[1]s
    consumers: [%[2]s]
    ports:
      - {name: tcp, port: 7100, protocol: TCP, endpoints: [{address: 127.0.0.1, port: %[3]d}]}
  - name: sealed
    fqdn: sealed.%[1]s
    mode: passthrough
    backendSpiffeIds: [%[4]s]
    consumers: [%[2]s]
    ports:
      - {name: tcp, port: 7101, protocol: TCP, endpoints: [{address: 127.0.0.1, port: %[5]d}]}
`, m.TrustDomain(), m.peer.Name, plain.Port(), svid.ID, sealed.Port())
	}
	a, b := federate(t, options{prepare: prepare})
	request := make([]byte, 1<<20)
	_, err := rand.Read(request)
	require.NoError(t, err)
	for _, m := range []*mesh{a, b} {
		for _, service := range []string{"answers", "sealed"} {
			t.Run(m.Name+"/"+service, func(t *testing.T) {
				p, ok := m.agent.Runner.EgressPort(m.peer.Name, service, "tcp")
				require.True(t, ok, "the import of %s has an egress port", service)
				addr := net.JoinHostPort(m.IP, strconv.FormatUint(uint64(p), 10))
				// federate returned once both gateways held all the agent
				// serves: one try is the test.
				c, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				defer c.Close()
				require.NoError(t, c.SetDeadline(time.Now().Add(time.Minute)))
				_, err = c.Write(request)
				require.NoError(t, err)
				require.NoError(t, c.(*net.TCPConn).CloseWrite())
				answer, err := io.ReadAll(c)
				require.NoError(t, err)
				require.Equal(t, len(request), len(answer))
				require.True(t, bytes.Equal(request, answer), "the answer is the request")
			})
		}
	}
}

// A peer removed from the owner's configuration can no longer complete a
// handshake with the owner's ingress from the moment the reload is
// applied, and the connections it had are closed within the gateway's
// drain time; added back, it is admitted again.
func TestRemovedPeerLosesTheIngress(t *testing.T) {
	a, b := federate(t, options{})
	root := filepath.Dir(b.Dir)

	// A connection through mesh-a's egress to mesh-b's TCP echo, open
	// before the peer is removed.
	held, err := net.Dial("tcp", a.importedTCPAddr(t))
	require.NoError(t, err)
	defer held.Close()
	echoOnce(t, held)
	require.NoError(t, directCall(t, b, root, "mesh-a", "/meshfed/gateway/egress"))

	b.PeerRemoved = true
	require.NoError(t, b.WriteConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = b.agent.Reload(ctx)
	require.NoError(t, err)
	eventually(t, "mesh-a's egress identity is refused a handshake", func(context.Context) error {
		if err := directCall(t, b, root, "mesh-a", "/meshfed/gateway/egress"); err == nil {
			return fmt.Errorf("mesh-a still called mesh-b's export")
		}
		return nil
	})
	removed := time.Now()
	// Envoy's own drain time is ten minutes: a minute tells them apart.
	require.NoError(t, held.SetReadDeadline(time.Now().Add(time.Minute)))
	// Closed either way: a FIN, or a reset when the gateway closes it
	// with bytes still unsent. A timeout is a connection left open.
	if _, err = io.Copy(io.Discard, held); !errors.Is(err, syscall.ECONNRESET) {
		require.NoError(t, err, "the held connection is closed, not left open")
	}
	t.Logf("the held connection was closed %v after the handshake was first refused (drain time %v)", time.Since(removed).Round(time.Millisecond), envoyrun.DefaultDrainTime)

	b.PeerRemoved = false
	require.NoError(t, b.WriteConfig())
	_, err = b.agent.Reload(ctx)
	require.NoError(t, err)
	eventually(t, "mesh-a's egress identity is admitted again", func(context.Context) error {
		return directCall(t, b, root, "mesh-a", "/meshfed/gateway/egress")
	})
}

// echoOnce writes a line on c and reads it back.
func echoOnce(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	_, err := io.WriteString(c, "ping\n")
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "ping\n", string(buf))
	require.NoError(t, c.SetDeadline(time.Time{}))
}
