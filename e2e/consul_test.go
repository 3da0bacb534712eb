package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/examples/twomesh"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry/consul/consultest"
	"github.com/meshfed/meshfed/snapshot"
)

// A workload of a Consul Connect mesh calls an import as its sidecar
// would: it takes its own leaf certificate and the CA roots from its
// Consul agent, finds the import's Connect proxy through
// /v1/health/connect, and dials it with Consul's mutual TLS and the SNI
// Consul gives the service. The egress ends that TLS as the import's
// Consul name and carries the call to the owner; an intention that denies
// the caller fails its handshake, so that nothing is opened for it, and
// the egress logs it.
func TestConnectSidecarReachesAnImport(t *testing.T) {
	cons := consultest.Start(t)
	cc := cons.Client(t, "")
	var ledger *upstream.Server
	a, _ := federate(t, options{prepare: func(m *mesh) {
		switch m.Name {
		case "mesh-a":
			m.Consul = fmt.Sprintf("  address: %s\n  import: {antiEntropy: 1s}\n  connect: {port: %d}\n", cons.HTTPAddr, freePort(t, m.IP))
		case "mesh-b":
			ledger = exportEcho(t, m, "ledger")
		}
	}})
	proxy := connectProxy(t, cc, "ledger-mesh-b")
	require.Equal(t, a.IP, proxy.Service.Address, "the import's Connect proxy is the egress")

	echoed := func() error {
		c, err := dialConnect(t, cc, "bar", "ledger-mesh-b", proxy)
		if err != nil {
			return err
		}
		defer c.Close()
		return echoOnceErr(c)
	}
	eventually(t, "the sidecar of bar reaches the import", func(context.Context) error { return echoed() })

	_, _, err := cc.Connect().IntentionCreate(&api.Intention{SourceName: "bar", DestinationName: "ledger-mesh-b", Action: api.IntentionActionDeny}, nil)
	require.NoError(t, err)
	eventually(t, "the intention refuses bar", func(context.Context) error {
		before := ledger.Accepted()
		if err := echoed(); err == nil {
			return errors.New("bar still reaches the import")
		}
		if ledger.Accepted() != before {
			return errors.New("the refused call reached the owner")
		}
		return nil
	})
	// Consul's intentions are in the handshake: the caller fails it.
	bar := "spiffe://" + proxyTrustDomain(t, cc) + "/ns/default/dc/" + consultest.Datacenter + "/svc/bar"
	eventually(t, "the egress refuses bar's handshake, and logs it", func(ctx context.Context) error {
		if err := echoed(); err == nil {
			return errors.New("bar still reaches the import")
		}
		st, err := a.egress.Stats(ctx, "ssl.fail_verify_san")
		if err != nil {
			return err
		}
		if st.Sum("listener.", "ssl.fail_verify_san") == 0 {
			return errors.New("no handshake refused for its SAN")
		}
		for _, l := range accessLog(t, a.egress) {
			if l["listener"] == snapshot.EgressConnectName && l["peer"] == bar && l["tls_failure"] != nil && l["upstream"] == nil {
				return nil
			}
		}
		return errors.New("no access log line of bar's refused handshake")
	})
}

// proxyTrustDomain is Consul's trust domain.
func proxyTrustDomain(t *testing.T, cc *api.Client) string {
	t.Helper()
	roots, _, err := cc.Agent().ConnectCARoots(nil)
	require.NoError(t, err)
	return roots.TrustDomain
}

// A Connect-native service of the owner's Consul mesh is exported: the
// ingress reaches it with Consul's mutual TLS as the Consul service
// meshfed-ingress, the service checks that identity with Consul, and a
// consumer in the other mesh gets its answer; an intention that denies
// meshfed-ingress refuses it.
func TestConnectServiceExportedThroughTheIngress(t *testing.T) {
	cons := consultest.Start(t)
	cc := cons.Client(t, "")
	var refused atomic.Int64
	a, _ := federate(t, options{prepare: func(m *mesh) {
		if m.Name != "mesh-b" {
			return
		}
		m.Consul = fmt.Sprintf("  address: %s\n  connect: {}\n", cons.HTTPAddr)
		srv, err := upstream.TLSEcho("foo", "", connectNativeServer(t, cc, "foo", &refused))
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, srv.Close()) })
		m.ExtraServices = fmt.Sprintf(`  - name: foo
    fqdn: foo.mesh-b.example
    consumers: [mesh-a]
    ports:
      - {name: tcp, port: 7200, protocol: TCP, consulService: foo, endpoints: [{address: 127.0.0.1, port: %d}]}
`, srv.Port())
	}})
	addr := importPort(t, a, "foo", "tcp")
	call := func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		return echoOnceErr(c)
	}
	eventually(t, "mesh-a reaches the Connect service foo", func(context.Context) error { return call() })

	_, _, err := cc.Connect().IntentionCreate(&api.Intention{SourceName: "meshfed-ingress", DestinationName: "foo", Action: api.IntentionActionDeny}, nil)
	require.NoError(t, err)
	eventually(t, "the intention refuses the ingress", func(context.Context) error {
		before := refused.Load()
		if err := call(); err == nil {
			return errors.New("the ingress still reaches foo")
		}
		if refused.Load() == before {
			return errors.New("foo did not refuse the ingress")
		}
		return nil
	})
}

// A workload that knows an import by the name Consul gives it reaches
// it: Consul's DNS answers <name>.service.consul with the egress, and the
// egress routes every Consul form of the name, on the service's own port
// for HTTP and on the instance's port (from Consul's SRV answer) for TCP.
func TestConsulNamesReachImports(t *testing.T) {
	cons := consultest.Start(t)
	a, _ := federate(t, options{prepare: func(m *mesh) {
		if m.Name == "mesh-a" {
			m.Consul = fmt.Sprintf("  address: %s\n  import: {antiEntropy: 1s}\n", cons.HTTPAddr)
		}
	}})
	resolver := twomesh.Resolver(cons.DNSAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ip string
	eventually(t, "Consul's DNS knows the import", func(ctx context.Context) error {
		addrs, err := resolver.LookupHost(ctx, "payments-mesh-b.service.consul")
		if err != nil {
			return err
		}
		ip = addrs[0]
		return nil
	})
	require.Equal(t, a.IP, ip)
	for _, host := range []string{
		"payments-mesh-b.service.consul", "payments-mesh-b.service.consul:8080", "PAYMENTS-MESH-B.service.consul",
		"payments-mesh-b.service.dc1.consul", "http.payments-mesh-b.service.consul", "http.payments-mesh-b.service.dc1.consul:8080",
		"payments-mesh-b",
	} {
		code, body, err := httpGet(ctx, net.JoinHostPort(ip, strconv.Itoa(httpPort)), host, "/by-consul-name")
		require.NoError(t, err, host)
		require.Equal(t, http.StatusOK, code, "%s: %s", host, body)
		var r upstream.Reply
		require.NoError(t, json.Unmarshal(body, &r), host)
		require.Equal(t, "payments-http", r.Service, host)
	}
	code, _, err := httpGet(ctx, net.JoinHostPort(ip, strconv.Itoa(httpPort)), "nobody-mesh-b.service.consul", "/")
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code, "a Consul name no import has")

	_, srvs, err := resolver.LookupSRV(ctx, "", "", "tcp.payments-mesh-b.service.consul")
	require.NoError(t, err)
	require.Len(t, srvs, 1)
	c, err := net.Dial("tcp", net.JoinHostPort(ip, strconv.Itoa(int(srvs[0].Port))))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, echoOnceErr(c))
}

// freePort is a TCP port free on ip now.
func freePort(t *testing.T, ip string) uint32 {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	require.NoError(t, err)
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

// exportEcho makes m export a TCP echo service called name to its peer,
// and returns the server.
func exportEcho(t *testing.T, m *mesh, name string) *upstream.Server {
	t.Helper()
	s, err := upstream.TCPEcho(name, "")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	m.ExtraServices += fmt.Sprintf(`  - name: %[1]s
    fqdn: %[1]s.%[2]s
    consumers: [%[3]s]
    ports:
      - {name: tcp, port: 7300, protocol: TCP, endpoints: [{address: 127.0.0.1, port: %[4]d}]}
`, name, m.TrustDomain(), m.peer.Name, s.Port())
	return s
}

// importPort is the egress address of the instance of the import of m's
// peer called service.
func importPort(t *testing.T, m *mesh, service, instance string) string {
	t.Helper()
	var addr string
	eventually(t, "the import of "+service, func(context.Context) error {
		p, ok := m.agent.Runner.EgressPort(m.peer.Name, service, instance)
		if !ok {
			return fmt.Errorf("no egress port for %s yet", service)
		}
		addr = net.JoinHostPort(m.IP, strconv.FormatUint(uint64(p), 10))
		return nil
	})
	return addr
}

// connectProxy waits for the Connect proxy of Consul service name.
func connectProxy(t *testing.T, cc *api.Client, name string) *api.ServiceEntry {
	t.Helper()
	var entry *api.ServiceEntry
	eventually(t, "the Connect proxy of "+name, func(context.Context) error {
		es, _, err := cc.Health().Connect(name, "", true, nil)
		if err != nil {
			return err
		}
		if len(es) != 1 {
			return fmt.Errorf("%d passing Connect instances of %s", len(es), name)
		}
		entry = es[0]
		return nil
	})
	return entry
}

// dialConnect dials the Connect proxy of service as a sidecar of caller
// would: its leaf and roots from Consul, the SNI Consul gives service,
// and the proxy's certificate checked to be service's.
func dialConnect(t *testing.T, cc *api.Client, caller, service string, proxy *api.ServiceEntry) (*tls.Conn, error) {
	t.Helper()
	roots, _, err := cc.Agent().ConnectCARoots(nil)
	require.NoError(t, err)
	cert, pool := connectCert(t, cc, caller, roots)
	want := "spiffe://" + roots.TrustDomain + "/ns/default/dc/" + consultest.Datacenter + "/svc/" + service
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ServerName:   service + ".default." + consultest.Datacenter + ".internal." + roots.TrustDomain,
		// Consul's certificates name their service by URI SAN only.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verifyConnectPeer(pool, want),
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(proxy.Service.Address, strconv.Itoa(proxy.Service.Port)), cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// connectCert is the leaf of Consul service name, and a pool of Consul's
// roots.
func connectCert(t *testing.T, cc *api.Client, name string, roots *api.CARootList) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	leaf, _, err := cc.Agent().ConnectCALeaf(name, nil)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.PrivateKeyPEM))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	for _, r := range roots.Roots {
		require.True(t, pool.AppendCertsFromPEM([]byte(r.RootCertPEM)))
	}
	return cert, pool
}

// verifyConnectPeer checks a peer's chain against Consul's roots and its
// URI SAN against want ("" for any).
func verifyConnectPeer(pool *x509.CertPool, want string) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no certificate")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		inter := x509.NewCertPool()
		for _, r := range raw[1:] {
			if c, err := x509.ParseCertificate(r); err == nil {
				inter.AddCert(c)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return err
		}
		if len(leaf.URIs) != 1 || want != "" && leaf.URIs[0].String() != want {
			return fmt.Errorf("the peer is %v, not %s", leaf.URIs, want)
		}
		return nil
	}
}

// connectNativeServer is the TLS of a Connect-native service name: its
// leaf, callers with a certificate of Consul's CA, each authorized by
// Consul's intentions as the Connect SDK does; refused counts refusals.
func connectNativeServer(t *testing.T, cc *api.Client, name string, refused *atomic.Int64) *tls.Config {
	t.Helper()
	roots, _, err := cc.Agent().ConnectCARoots(nil)
	require.NoError(t, err)
	cert, pool := connectCert(t, cc, name, roots)
	verify := verifyConnectPeer(pool, "")
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// Every connection, resumed ones included (Envoy resumes TLS
		// sessions): VerifyPeerCertificate skips those.
		VerifyConnection: func(cs tls.ConnectionState) error {
			var raw [][]byte
			for _, c := range cs.PeerCertificates {
				raw = append(raw, c.Raw)
			}
			if err := verify(raw, nil); err != nil {
				refused.Add(1)
				return err
			}
			leaf := cs.PeerCertificates[0]
			res, err := cc.Agent().ConnectAuthorize(&api.AgentAuthorizeParams{Target: name, ClientCertURI: leaf.URIs[0].String(), ClientCertSerial: serialHex(leaf)})
			if err != nil || !res.Authorized {
				refused.Add(1)
				return fmt.Errorf("not authorized: %v %v", res, err)
			}
			return nil
		},
	}
}

func serialHex(c *x509.Certificate) string {
	var parts []string
	for _, b := range c.SerialNumber.Bytes() {
		parts = append(parts, fmt.Sprintf("%02x", b))
	}
	return strings.Join(parts, ":")
}

// echoOnceErr writes a line on c and reads it back.
func echoOnceErr(c net.Conn) error {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping\n" {
		return fmt.Errorf("echoed %q", buf)
	}
	return nil
}

// When Consul's CA rotates, the egress and the ingress take the new roots
// and leaves as Consul's agent signs them, and no call of a Connect
// workload fails meanwhile: neither a sidecar's call of an import nor an
// import's call of a Connect service.
func TestConsulCARotationLosesNoCall(t *testing.T) {
	cons := consultest.Start(t)
	cc := cons.Client(t, "")
	var refused atomic.Int64
	a, _ := federate(t, options{prepare: func(m *mesh) {
		switch m.Name {
		case "mesh-a":
			m.Consul = fmt.Sprintf("  address: %s\n  import: {antiEntropy: 1s}\n  connect: {port: %d}\n", cons.HTTPAddr, freePort(t, m.IP))
		case "mesh-b":
			exportEcho(t, m, "ledger")
			m.Consul = fmt.Sprintf("  address: %s\n  connect: {}\n", cons.HTTPAddr)
			srv, err := upstream.TLSEcho("foo", "", connectNativeServer(t, cc, "foo", &refused))
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, srv.Close()) })
			m.ExtraServices += fmt.Sprintf(`  - name: foo
    fqdn: foo.mesh-b.example
    consumers: [mesh-a]
    ports:
      - {name: tcp, port: 7200, protocol: TCP, consulService: foo, endpoints: [{address: 127.0.0.1, port: %d}]}
`, srv.Port())
		}
	}})
	proxy := connectProxy(t, cc, "ledger-mesh-b")
	fooAddr := importPort(t, a, "foo", "tcp")
	calls := []func() error{
		func() error {
			c, err := dialConnect(t, cc, "bar", "ledger-mesh-b", proxy)
			if err != nil {
				return err
			}
			defer c.Close()
			return echoOnceErr(c)
		},
		func() error {
			c, err := net.Dial("tcp", fooAddr)
			if err != nil {
				return err
			}
			defer c.Close()
			return echoOnceErr(c)
		},
	}
	for _, call := range calls {
		eventually(t, "a Connect call", func(context.Context) error { return call() })
	}

	roots, _, err := cc.Agent().ConnectCARoots(nil)
	require.NoError(t, err)
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, call := range calls {
				if err := call(); err != nil {
					failed.Add(1)
					lastErr.Store(err.Error())
				} else {
					ok.Add(1)
				}
			}
		}
	}()
	key := newCAKey(t)
	_, err = cc.Connect().CASetConfig(&api.CAConfig{Provider: "consul", Config: map[string]any{"PrivateKey": key}}, nil)
	require.NoError(t, err)
	rotated := time.Now()
	leafName := snapshot.ConsulLeafSecretName("ledger-mesh-b")
	deadline := time.Now().Add(2 * time.Minute)
	for !servedLeafSignedByNewRoot(t, a, cc, roots.ActiveRootID, leafName) {
		require.True(t, time.Now().Before(deadline), "the egress has no leaf of the new root after 2 minutes")
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the egress's leaf was signed by the new root %v after the rotation", time.Since(rotated).Round(time.Millisecond))
	// Calls on the new leaf, for a while.
	time.Sleep(2 * time.Second)
	close(stop)
	<-done
	t.Logf("%d calls succeeded during and after the rotation", ok.Load())
	require.Zero(t, failed.Load(), "calls failed during the rotation; the last: %v", lastErr.Load())
	require.Positive(t, ok.Load())
}

// newCAKey is a new P-256 key in PEM, for Consul's built-in CA.
func newCAKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

// servedLeafSignedByNewRoot says whether the leaf the agent of m serves
// under name was signed by an active root other than old.
func servedLeafSignedByNewRoot(t *testing.T, m *mesh, cc *api.Client, old, name string) bool {
	t.Helper()
	roots, _, err := cc.Agent().ConnectCARoots(nil)
	require.NoError(t, err)
	if roots.ActiveRootID == old {
		return false
	}
	var active *x509.Certificate
	for _, r := range roots.Roots {
		if r.ID == roots.ActiveRootID {
			b, _ := pem.Decode([]byte(r.RootCertPEM))
			active, err = x509.ParseCertificate(b.Bytes)
			require.NoError(t, err)
		}
	}
	for _, r := range m.agent.Cache.Resources(model.Egress, resource.SecretType) {
		if r.Name != name {
			continue
		}
		var s tlsv3.Secret
		require.NoError(t, r.Resource.UnmarshalTo(&s))
		b, _ := pem.Decode([]byte(s.GetTlsCertificate().GetCertificateChain().GetInlineString()))
		leaf, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		return leaf.CheckSignatureFrom(active) == nil
	}
	return false
}
