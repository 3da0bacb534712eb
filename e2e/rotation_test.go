package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshfed/meshfed/certs"
	"github.com/meshfed/meshfed/envoyrun"
	"github.com/meshfed/meshfed/model"
)

// Rotating every gateway SVID of both meshes while a gRPC stream crosses
// them: the stream lives on, Envoy loads the new certificates (admin
// /certs), a new connection presents the new one, and no listener or
// cluster is touched (a rotation changes secrets only).
func TestSVIDRotationKeepsStreamsAndListeners(t *testing.T) {
	a, b := federate(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	stream, err := a.grpcClient(t).FullDuplexCall(ctx)
	require.NoError(t, err)
	exchange := func(what string) {
		t.Helper()
		require.NoError(t, stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 7}}}), what)
		resp, err := stream.Recv()
		require.NoError(t, err, what)
		require.Len(t, resp.GetPayload().GetBody(), 7, what)
	}
	exchange("before the rotation")

	meshes := []*mesh{a, b}
	churn0 := map[string]map[string]uint64{}
	for _, m := range meshes {
		churn0[m.Name] = gatewayChurn(ctx, t, m)
	}
	serials := map[string]string{}
	for _, m := range meshes {
		for _, role := range model.GatewayRoles {
			old := m.serial(t, role)
			id, err := certs.RoleID(spiffeid.RequireTrustDomainFromString(m.TrustDomain()), role)
			require.NoError(t, err)
			dir := filepath.Join(m.Dir, "certs")
			require.NoError(t, certs.IssueSVID(dir, id, dir, string(role)))
			serials[m.Name+"/"+string(role)] = m.serial(t, role)
			require.NotEqual(t, old, serials[m.Name+"/"+string(role)])
		}
	}
	for _, m := range meshes {
		for _, e := range []struct {
			role  model.Role
			envoy *envoyrun.Envoy
		}{{model.Egress, m.egress}, {model.Ingress, m.ingress}} {
			want := serials[m.Name+"/"+string(e.role)]
			eventually(t, fmt.Sprintf("%s loads serial %s", e.envoy.Name(), want), func(ctx context.Context) error {
				return hasSerial(ctx, e.envoy, want)
			})
		}
	}

	exchange("after the rotation, on the same stream")
	require.NoError(t, stream.CloseSend())

	// A new connection from mesh-a's egress (each TCP connection has its
	// own upstream one; HTTP reuses its pool) presents its new SVID to
	// mesh-b's ingress, which logs the caller's serial when it ends.
	checkTCP(t, a)
	want := serials["mesh-a/egress"]
	eventually(t, "mesh-b's ingress logs a caller with mesh-a's new serial", func(context.Context) error {
		for _, l := range accessLog(t, b.ingress) {
			if s, _ := l["peer_serial"].(string); sameSerial(s, want) {
				return nil
			}
		}
		return fmt.Errorf("no access log line with peer_serial %s", want)
	})

	for _, m := range meshes {
		require.Equal(t, churn0[m.Name], gatewayChurn(ctx, t, m), "%s: listeners and clusters added, modified or removed", m.Name)
	}
}

// serial is the serial number, in hex, of the SVID of role in m's files.
func (m *mesh) serial(t *testing.T, role model.Role) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(m.Dir, "certs", string(role)+".pem"))
	require.NoError(t, err)
	block, _ := pem.Decode(raw)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return fmt.Sprintf("%x", c.SerialNumber)
}

// hasSerial reports whether Envoy holds a certificate chain whose leaf has
// the serial number.
func hasSerial(ctx context.Context, e *envoyrun.Envoy, serial string) error {
	cs, err := e.Certs(ctx)
	if err != nil {
		return err
	}
	var seen []string
	for _, c := range cs.GetCertificates() {
		for _, d := range c.GetCertChain() {
			if sameSerial(d.GetSerialNumber(), serial) {
				return nil
			}
			seen = append(seen, d.GetSerialNumber())
		}
	}
	return fmt.Errorf("serials held: %v", seen)
}

// sameSerial compares serial numbers in hex, which Envoy writes with
// leading zeros and Go without.
func sameSerial(a, b string) bool {
	return strings.EqualFold(strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0"))
}

// accessLog reads the JSON access log lines Envoy wrote so far.
func accessLog(t *testing.T, e *envoyrun.Envoy) []map[string]any {
	t.Helper()
	f, err := os.Open(e.LogPath())
	require.NoError(t, err)
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			out = append(out, m)
		}
	}
	require.NoError(t, sc.Err())
	return out
}
