package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshfed/meshfed/e2e/upstream"
	"github.com/meshfed/meshfed/envoyrun"
	"github.com/meshfed/meshfed/examples/twomesh"
)

// startGateways starts the mesh's egress and ingress Envoy on the
// bootstraps of envoy-configs, pointed at its agent.
func (m *mesh) startGateways(ctx context.Context, bin string) error {
	for _, g := range []struct {
		role string
		dst  **envoyrun.Envoy
	}{{"egress", &m.egress}, {"ingress", &m.ingress}} {
		boot, err := m.Bootstrap(g.role, false)
		if err != nil {
			return err
		}
		e, err := envoyrun.Start(ctx, envoyrun.Config{Binary: bin, Name: g.role, Dir: m.Dir, Bootstrap: boot})
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("gave up waiting for %s's %s gateway to start: %w (%v)", m.Name, g.role, err, context.Cause(ctx))
		}
		if err != nil {
			return fmt.Errorf("%s %s gateway: %w", m.Name, g.role, err)
		}
		*g.dst = e
		fmt.Fprintf(m.out, "    %s %-7s gateway: pid %d, admin http://%s, log %s\n", m.Name, g.role, e.Pid(), e.Admin(), e.LogPath())
	}
	return nil
}

// waitGateways waits until both gateways applied their first configuration.
func (m *mesh) waitGateways(ctx context.Context) error {
	for _, e := range []*envoyrun.Envoy{m.egress, m.ingress} {
		what := fmt.Sprintf("%s's %s gateway to apply its first configuration (GET http://%s/ready; log %s)", m.Name, e.Name(), e.Admin(), e.LogPath())
		err := until(ctx, what, func(ctx context.Context) error {
			select {
			case <-e.Exited():
				return final{fmt.Errorf("the gateway exited: %s", e.LogTail(10))}
			default:
			}
			return e.Ready(ctx)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// callPeer calls the service the peer exports the way a workload of m
// does: it resolves the name with m's DNS server and connects where the
// answer says, which is m's egress gateway on the service's own port. It
// prints what came back, and whom the owner's ingress saw calling.
func (m *mesh) callPeer(ctx context.Context) error {
	name := m.peer.FQDN()
	r := twomesh.Resolver(m.DNS)
	step(m.out, "From %s to %s: %s, resolved with %s's DNS (%s)", m.Name, m.peer.Name, name, m.Name, m.DNS)
	var ips []string
	var tcp []*net.SRV
	err := until(ctx, fmt.Sprintf("%s's DNS server (%s) to answer for %s and _tcp._tcp.%s", m.Name, m.DNS, name, name), func(ctx context.Context) error {
		var err error
		if ips, err = r.LookupHost(ctx, name); err != nil {
			return err
		}
		_, tcp, err = r.LookupSRV(ctx, "tcp", "tcp", name)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(m.out, "    %s is at %s (the egress gateway of %s); its TCP port %d is served on %d\n", name, strings.Join(ips, ", "), m.Name, twomesh.TCPPort, tcp[0].Port)
	dial := (&net.Dialer{Resolver: r}).DialContext
	for _, c := range []struct {
		what string
		call func(context.Context, func(context.Context, string, string) (net.Conn, error)) error
	}{
		{fmt.Sprintf("GET http://%s:%d/hello through %s's egress gateway to answer 200 OK", name, m.peer.HTTPPort(), m.Name), m.callHTTP},
		{fmt.Sprintf("a gRPC call to %s:%d through %s's egress gateway to be answered", name, m.peer.GRPCPort(), m.Name), m.callGRPC},
		{fmt.Sprintf("TCP bytes sent to %s:%d through %s's egress gateway to be echoed", name, tcp[0].Port, m.Name), func(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error)) error {
			return m.callTCP(ctx, dial, tcp[0].Port)
		}},
	} {
		if err := until(ctx, c.what, func(ctx context.Context) error { return c.call(ctx, dial) }); err != nil {
			return err
		}
	}
	return m.peer.showCaller(ctx)
}

func (m *mesh) callHTTP(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error)) error {
	c := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	url := fmt.Sprintf("http://%s:%d/hello", m.peer.FQDN(), m.peer.HTTPPort())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	var rep upstream.Reply
	if err := json.Unmarshal(body, &rep); err != nil {
		return err
	}
	fmt.Fprintf(m.out, "    HTTP  GET %s -> %s from %s, which saw Host %q\n", url, resp.Status, rep.Service, rep.Host)
	return nil
}

func (m *mesh) callGRPC(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error)) error {
	target := fmt.Sprintf("%s:%d", m.peer.FQDN(), m.peer.GRPCPort())
	conn, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := testpb.NewTestServiceClient(conn).UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}})
	if err != nil {
		return fmt.Errorf("gRPC UnaryCall on %s: %w", target, err)
	}
	fmt.Fprintf(m.out, "    gRPC  grpc.testing.TestService/UnaryCall on %s -> %q from %s\n", target, resp.GetPayload().GetBody(), resp.GetServerId())
	return nil
}

func (m *mesh) callTCP(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), port uint16) error {
	addr := fmt.Sprintf("%s:%d", m.peer.FQDN(), port)
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(d); err != nil {
			return err
		}
	}
	msg := "hello over TCP from " + m.Name
	if _, err := io.WriteString(conn, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("TCP echo through %s: %w", addr, err)
	}
	fmt.Fprintf(m.out, "    TCP   %d bytes to %s -> echoed %q\n", len(msg), addr, got)
	return nil
}

// showCaller prints, from the access log of m's ingress gateway, whom it
// saw calling each of the exported service's three ports.
func (m *mesh) showCaller(ctx context.Context) error {
	what := fmt.Sprintf("%s's ingress gateway to log the callers of %s's 3 ports (the lines with \"event\":\"accepted\" in %s)", m.Name, m.Service, m.ingress.LogPath())
	return until(ctx, what, func(context.Context) error {
		f, err := os.Open(m.ingress.LogPath())
		if err != nil {
			return err
		}
		defer f.Close()
		seen := map[string]bool{}
		var lines []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l map[string]any
			// A caller's line when the ingress let it in.
			if json.Unmarshal(sc.Bytes(), &l) != nil || l["event"] != "accepted" {
				continue
			}
			line := fmt.Sprintf("%v, SNI %v", l["peer"], l["sni"])
			if !seen[line] {
				seen[line] = true
				lines = append(lines, line)
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
		if len(lines) < 3 {
			return fmt.Errorf("%d of the 3 so far: %s", len(lines), strings.Join(lines, "; "))
		}
		fmt.Fprintf(m.out, "    %s's ingress gateway saw the caller as (its access log):\n", m.Name)
		for _, l := range lines {
			fmt.Fprintln(m.out, "      "+l)
		}
		return nil
	})
}
