package envoyconfigs

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// Roles are the gateways' roles, the names of their bootstrap files.
var Roles = []string{"egress", "ingress"}

// Defaults of a generated bootstrap. The first Envoy of a role on a host
// takes these ports; each further one (Options.Instance) the ports 2 above
// the one before, so that egress and ingress gateways never collide.
const (
	DefaultEgressAdmin      = "127.0.0.1:19000"
	DefaultIngressAdmin     = "127.0.0.1:19001"
	DefaultEgressStats      = "127.0.0.1:15090"
	DefaultIngressStats     = "127.0.0.1:15091"
	DefaultMaxHeapBytes     = 1 << 30
	DefaultMaxConnections   = 50000
	defaultInstancePortStep = 2
)

// Options are what a generated bootstrap holds for one gateway.
type Options struct {
	// Role is egress or ingress.
	Role string
	// NodeID is the id the agent knows the gateway by.
	NodeID string
	// Admin and Stats are host:port of the admin interface (loopback)
	// and of the prometheus listener.
	Admin, Stats string
	// XDS is the agent's ADS endpoint: unix:///path, or host:port.
	XDS string
	// XDSTLS, with a host:port XDS, is the gateway's side of mutual TLS.
	XDSTLS *ClientTLS
	// ExampleTLS fills the example of mutual TLS that a bootstrap over the
	// Unix socket shows in a comment: the paths the agent's configuration
	// gives the gateway's SVID on its own host.
	ExampleTLS ClientTLS
	// MaxHeapBytes and MaxConnections bound the gateway (overload manager).
	MaxHeapBytes, MaxConnections uint64
	// BaseID is the --base-id the header tells Envoy to start with.
	BaseID uint32
}

// DefaultOptions are the options of the instance'th further Envoy of role
// on one host (0 for the first): the ports of the bootstraps in this
// folder, shifted, and a base id of its own.
func DefaultOptions(role string, instance uint32) (Options, error) {
	o := Options{Role: role, MaxHeapBytes: DefaultMaxHeapBytes, MaxConnections: DefaultMaxConnections}
	var roleIndex uint32
	switch role {
	case "egress":
		o.Admin, o.Stats = DefaultEgressAdmin, DefaultEgressStats
	case "ingress":
		o.Admin, o.Stats = DefaultIngressAdmin, DefaultIngressStats
		roleIndex = 1
	default:
		return Options{}, fmt.Errorf("role %q: a gateway is egress or ingress", role)
	}
	shift := func(hostPort string) string {
		host, port, _ := net.SplitHostPort(hostPort)
		n, _ := strconv.ParseUint(port, 10, 16)
		return net.JoinHostPort(host, strconv.FormatUint(n+uint64(instance*defaultInstancePortStep), 10))
	}
	if instance > 100 {
		return Options{}, fmt.Errorf("instance %d: at most 100 further Envoys of a role on one host", instance)
	}
	o.Admin, o.Stats = shift(o.Admin), shift(o.Stats)
	o.BaseID = instance*uint32(len(Roles)) + roleIndex
	return o, nil
}

//go:embed bootstrap.yaml.tmpl
var bootstrapTemplate string

var tmpl = template.Must(template.New("bootstrap").Funcs(template.FuncMap{
	"upper": strings.ToUpper,
	"dir":   path.Dir,
	"json":  yamlString,
	"bytes": humanBytes,
}).Parse(bootstrapTemplate))

// plainYAML matches what YAML reads back as the same string unquoted:
// names, paths and IPv4 addresses, none of them a number, bool or null.
var plainYAML = regexp.MustCompile(`^[A-Za-z/_][A-Za-z0-9./_-]*$|^[0-9]+(\.[0-9]+){2,}$`)

// yamlString writes s as a YAML scalar that reads back as the string s:
// plain when nothing in it means anything else to YAML, else quoted (JSON
// strings are YAML's double-quoted ones).
func yamlString(s string) (string, error) {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n":
	default:
		if plainYAML.MatchString(s) {
			return s, nil
		}
	}
	b, err := json.Marshal(s)
	return string(b), err
}

type hostPort struct {
	Host string
	Port uint32
}

func splitAddr(field, s string) (hostPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return hostPort{}, fmt.Errorf("%s %q: %w", field, s, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return hostPort{}, fmt.Errorf("%s %q: port %q is not a number from 1 to 65535", field, s, port)
	}
	if host == "" {
		return hostPort{}, fmt.Errorf("%s %q: no host", field, s)
	}
	return hostPort{Host: host, Port: uint32(n)}, nil
}

// Generate writes the bootstrap of o, with the comments an operator reads,
// and checks it as ParseBootstrap does.
func Generate(o Options) ([]byte, error) {
	type view struct {
		Options
		Admin, Stats, XDSAddr hostPort
		Pipe                  string
	}
	v := view{Options: o}
	var err error
	if o.Role != "egress" && o.Role != "ingress" {
		return nil, fmt.Errorf("role %q: a gateway is egress or ingress", o.Role)
	}
	if o.NodeID == "" {
		return nil, errors.New("no node id")
	}
	if v.Admin, err = splitAddr("admin", o.Admin); err != nil {
		return nil, err
	}
	if v.Stats, err = splitAddr("stats", o.Stats); err != nil {
		return nil, err
	}
	if v.Admin == v.Stats {
		return nil, fmt.Errorf("stats %q: the admin interface listens there", o.Stats)
	}
	if p, ok := strings.CutPrefix(o.XDS, "unix://"); ok {
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("xds %q: the socket's path must be absolute (unix:///path)", o.XDS)
		}
		if o.XDSTLS != nil {
			return nil, fmt.Errorf("xds %q: mutual TLS is for a host:port, not a Unix socket", o.XDS)
		}
		v.Pipe = p
	} else if v.XDSAddr, err = splitAddr("xds", o.XDS); err != nil {
		return nil, err
	}
	if t := o.XDSTLS; t != nil && (t.CertFile == "" || t.KeyFile == "" || t.BundleFile == "" || t.AgentID == "") {
		return nil, errors.New("mutual TLS toward the agent needs the gateway's certificate and key, the bundle and the agent's SPIFFE ID")
	}
	if o.MaxHeapBytes == 0 || o.MaxConnections == 0 {
		return nil, errors.New("the heap and connection limits must be above 0")
	}
	var out strings.Builder
	if err := tmpl.Execute(&out, v); err != nil {
		return nil, err
	}
	if _, err := ParseBootstrap([]byte(out.String())); err != nil {
		return nil, fmt.Errorf("the generated %s bootstrap: %w", o.Role, err)
	}
	return []byte(out.String()), nil
}

// humanBytes is n in GiB or MiB when it is a whole number of them.
func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return ""
}

// ParseBytes reads a size: bytes, or a whole number of Ki, Mi or Gi.
func ParseBytes(s string) (uint64, error) {
	num, mult := s, uint64(1)
	for suffix, m := range map[string]uint64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			num, mult = n, m
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size such as 1073741824, 512Mi or 1Gi", s)
	}
	return n * mult, nil
}
