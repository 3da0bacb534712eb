package xds

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
)

// Listen listens on a TCP address, or on a Unix socket given as
// "unix:///path", mode 0600. A socket file left by a previous run is
// replaced.
func Listen(address string) (net.Listener, error) {
	if address == "" {
		return nil, errors.New("xds: no address to listen on")
	}
	path, ok := strings.CutPrefix(address, "unix://")
	if !ok {
		return net.Listen("tcp", address)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode()&fs.ModeSocket != 0 {
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Who may connect is who may serve as a gateway and receive its SVID
	// private key: this user only, unless the operator widens it.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = lis.Close()
		return nil, err
	}
	return lis, nil
}

// Target is the gRPC target of a listener's address: unix://path for a
// Unix socket.
func Target(addr net.Addr) string {
	if u, ok := addr.(*net.UnixAddr); ok {
		return "unix://" + u.Name
	}
	return addr.String()
}
