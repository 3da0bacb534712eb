package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Channel is how gateways reach the server, which decides what they may
// ask for.
type Channel string

const (
	// ChannelUnix is a Unix socket: who may connect is settled by the
	// socket file's permissions; any node id is served.
	ChannelUnix Channel = "unix"
	// ChannelMTLS is TCP with mutual TLS: the gateway's SPIFFE ID decides
	// which node ids it may use (Config.AuthorizeNode).
	ChannelMTLS Channel = "mtls"
	// ChannelPlaintext is TCP without TLS, on loopback only: nobody vouches
	// for the client, so it is served no secret that holds a private key.
	ChannelPlaintext Channel = "plaintext"
)

// ErrPlaintextBeyondLoopback refuses to serve gateways in plaintext where
// other hosts reach: their SVID keys would cross the network in clear.
var ErrPlaintextBeyondLoopback = errors.New("xds: a TCP listener without TLS must be on loopback")

// channelOf is the channel of a listener: Unix, mutual TLS when tls is
// set, else plaintext, which is refused beyond loopback.
func channelOf(lis net.Listener, tls bool) (Channel, error) {
	if _, ok := lis.Addr().(*net.UnixAddr); ok {
		return ChannelUnix, nil
	}
	if tls {
		return ChannelMTLS, nil
	}
	ap, err := netip.ParseAddrPort(lis.Addr().String())
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return "", fmt.Errorf("%w, not %s: use a Unix socket or mutual TLS", ErrPlaintextBeyondLoopback, lis.Addr())
	}
	return ChannelPlaintext, nil
}

// peerID is the SPIFFE ID of the client certificate of a stream over
// mutual TLS; ok is false for another stream.
func peerID(ctx context.Context) (spiffeid.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, false
	}
	id, err := x509svid.IDFromCert(info.State.PeerCertificates[0])
	return id, err == nil
}

// remoteAddr is the client's address, for logs.
func remoteAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
