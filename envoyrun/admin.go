package envoyrun

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	// The typed configs Envoy reports in config_dump: protojson resolves
	// an Any through the global registry.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/bootstrap/internal_listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/set_filter_state/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/common_inputs/network/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/internal_upstream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// adminTimeout bounds an admin request whose context has no deadline. A
// caller that expects a slow answer (the config dump of 10,000 services on
// a busy machine) gives its own.
const adminTimeout = 10 * time.Second

// Get fetches path (with its query) from the admin interface and returns
// the body of a 200 answer.
func (e *Envoy) Get(ctx context.Context, path string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, adminTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.admin+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("envoy %s admin: %w", e.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("envoy %s admin %s: %w", e.name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("envoy %s admin %s: %s: %s", e.name, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// Ready reports whether Envoy finished initializing (admin /ready is LIVE):
// it received and applied its first configuration.
func (e *Envoy) Ready(ctx context.Context) error {
	body, err := e.Get(ctx, "/ready")
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(string(body)); s != "LIVE" {
		return fmt.Errorf("envoy %s is %s", e.name, s)
	}
	return nil
}

// Stats are Envoy's counters and gauges by name.
type Stats map[string]uint64

// Stats reads every counter and gauge; a filter (a regular expression, as
// admin /stats?filter= takes it) narrows them.
func (e *Envoy) Stats(ctx context.Context, filter string) (Stats, error) {
	path := "/stats"
	if filter != "" {
		path += "?filter=" + filter
	}
	body, err := e.Get(ctx, path)
	if err != nil {
		return nil, err
	}
	out := Stats{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		// name: value; histograms have other values and are skipped.
		line := sc.Text()
		i := strings.LastIndex(line, ": ")
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseUint(line[i+2:], 10, 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// Sum adds the stats whose names have the prefix and the suffix.
func (s Stats) Sum(prefix, suffix string) uint64 {
	var n uint64
	for k, v := range s {
		if strings.HasPrefix(k, prefix) && strings.HasSuffix(k, suffix) {
			n += v
		}
	}
	return n
}

// ConfigDump reads admin /config_dump with query (e.g. "include_eds", or
// "resource=dynamic_active_clusters").
func (e *Envoy) ConfigDump(ctx context.Context, query string) (*adminv3.ConfigDump, error) {
	path := "/config_dump"
	if query != "" {
		path += "?" + query
	}
	out := &adminv3.ConfigDump{}
	return out, e.getProto(ctx, path, out)
}

// Certs reads admin /certs: the certificates of every TLS context.
func (e *Envoy) Certs(ctx context.Context) (*adminv3.Certificates, error) {
	out := &adminv3.Certificates{}
	return out, e.getProto(ctx, "/certs", out)
}

// Memory reads admin /memory: tcmalloc's figures now, where the
// server.memory_* gauges are those of the last stats flush (every 5 s by
// default).
func (e *Envoy) Memory(ctx context.Context) (*adminv3.Memory, error) {
	out := &adminv3.Memory{}
	return out, e.getProto(ctx, "/memory", out)
}

func (e *Envoy) getProto(ctx context.Context, path string, m proto.Message) error {
	body, err := e.Get(ctx, path)
	if err != nil {
		return err
	}
	if err := protojson.Unmarshal(body, m); err != nil {
		return fmt.Errorf("envoy %s admin %s: %w", e.name, path, err)
	}
	return nil
}
