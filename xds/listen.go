package xds

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
)

// DefaultAddress is loopback: gateways run beside the agent unless
// configured otherwise.
const DefaultAddress = "127.0.0.1:18000"

// Listen listens on a TCP address, or on a Unix socket given as
// "unix:///path". A socket file left by a previous run is replaced.
func Listen(address string) (net.Listener, error) {
	if address == "" {
		address = DefaultAddress
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
	return net.Listen("unix", path)
}
