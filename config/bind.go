package config

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meshfed/meshfed/internal/untrusted"
)

// Listener is an address the agent or one of its gateways binds: a port,
// or a range of ports, on a host.
type Listener struct {
	// Field is the configuration field it comes from.
	Field string
	// Host is an IP literal, empty or unspecified for every address.
	Host string
	// From and To are the ports, inclusive; 0 is a port the system picks.
	From, To uint32
}

// String is host:port, or host:from-to for a range.
func (l Listener) String() string {
	if l.From == l.To {
		return net.JoinHostPort(l.Host, strconv.FormatUint(uint64(l.From), 10))
	}
	return fmt.Sprintf("%s:%d-%d", l.Host, l.From, l.To)
}

// Overlaps reports whether l and o cannot both be bound: a port in
// common, on one host or where either binds every address. Port 0 is a
// new port each time.
func (l Listener) Overlaps(o Listener) bool {
	if l.From == 0 || o.From == 0 || l.To < o.From || o.To < l.From {
		return false
	}
	every := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return h == "" || err == nil && ip.IsUnspecified()
	}
	if every(l.Host) || every(o.Host) {
		return true
	}
	a, errA := netip.ParseAddr(l.Host)
	b, errB := netip.ParseAddr(o.Host)
	if errA != nil || errB != nil {
		return l.Host == o.Host
	}
	return a.Unmap() == b.Unmap()
}

// Listeners are every TCP or UDP address the agent and its gateways bind
// as configured, in the configuration's order: the agent's listeners,
// then the ingress gateway's TLS listener, the egress gateway's range of
// dedicated ports and its Consul Connect port. (The egress gateway also
// binds the ports of the HTTP services it imports, which peers choose.)
func (c *Config) Listeners() []Listener {
	var out []Listener
	add := func(field, addr string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return
		}
		out = append(out, Listener{Field: field, Host: host, From: uint32(n), To: uint32(n)})
	}
	add("federation.listen", c.Federation.Listen)
	if j := c.Federation.Join; j != nil && j.Listen != "" {
		add("federation.join.listen", j.Listen)
	}
	if be := c.BundleEndpoint; be != nil {
		add("bundleEndpoint.listen", be.Listen)
	}
	if !strings.HasPrefix(c.XDS.Listen, "unix://") {
		add("xds.listen", c.XDS.Listen)
	}
	add("admin.listen", c.Admin.Listen)
	if c.DNS.Listen != "" {
		add("dns.listen", c.DNS.Listen)
	}
	g := c.Gateways
	out = append(out, Listener{Field: "gateways.ingress.listen", Host: g.Ingress.Listen.Address, From: g.Ingress.Listen.Port, To: g.Ingress.Listen.Port})
	out = append(out, Listener{Field: "gateways.egress.ports", Host: g.Egress.Listen.Address, From: g.Egress.Ports.From, To: g.Egress.Ports.To})
	if c.Consul != nil && c.Consul.Connect != nil && c.Consul.Connect.Port != 0 {
		p := c.Consul.Connect.Port
		out = append(out, Listener{Field: "consul.connect.port", Host: g.Egress.Listen.Address, From: p, To: p})
	}
	return out
}

// checkFederationAddresses checks the addresses invitations give and the
// join endpoint's.
func (c *Config) checkFederationAddresses() error {
	for i, a := range c.Federation.Advertise {
		if err := hostPort(a); err != nil {
			return fieldErr(fmt.Sprintf("federation.advertise[%d]", i), "%s: %v", untrusted.Quote(a), err)
		}
	}
	j := c.Federation.Join
	if j == nil {
		return nil
	}
	if j.Listen == "" {
		return fieldErr("federation.join.listen", "required: where joining meshes connect, such as 127.0.0.1:15445; leave join out for no join endpoint")
	}
	if err := hostPort(j.Listen); err != nil {
		return fieldErr("federation.join.listen", "%s: %v", untrusted.Quote(j.Listen), err)
	}
	if j.Advertise != "" {
		if err := hostPort(j.Advertise); err != nil {
			return fieldErr("federation.join.advertise", "%s: %v", untrusted.Quote(j.Advertise), err)
		}
	}
	return nil
}

// AdvertisedAddr is what peers dial to reach listen: advertise when set,
// else listen, unless it binds every address (which no peer can dial).
func AdvertisedAddr(listen, advertise string) (string, bool) {
	if advertise != "" {
		return advertise, true
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" {
		return "", false
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		return "", false
	}
	return listen, true
}

// checkNegativeDurations refuses a negative duration anywhere: none means
// anything, and some would be taken for "never" or "at once".
func (c *Config) checkNegativeDurations() error {
	return negativeDurations(reflect.ValueOf(c).Elem(), "")
}

var (
	durationType   = reflect.TypeFor[Duration]()
	goDurationType = reflect.TypeFor[time.Duration]()
)

func negativeDurations(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return negativeDurations(v.Elem(), path)
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			if err := negativeDurations(v.Field(i), join(path, name)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			if err := negativeDurations(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Int64:
		if (v.Type() == durationType || v.Type() == goDurationType) && v.Int() < 0 {
			return fieldErr(path, "%s is negative", time.Duration(v.Int()))
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// defaultedDurations are the durations whose zero is replaced by their
// default: a 0s written there would be taken for the default in silence,
// when whoever wrote it meant none.
var defaultedDurations = []struct {
	field string
	def   time.Duration
}{
	{"identity.expiryWarning", DefaultExpiryWarning},
	{"identity.settleTime", DefaultSettleTime},
	{"federation.grace", DefaultGrace},
	{"federation.handshakeTimeout", DefaultHandshakeTimeout},
	{"federation.maxBackoff", DefaultMaxBackoff},
	{"xds.holdoff", DefaultHoldoff},
	{"xds.maxDelay", DefaultMaxDelay},
	{"xds.firstRequestTimeout", DefaultFirstRequestTimeout},
	{"xds.handshakeTimeout", DefaultHandshakeTimeout},
}

// explicitZeroDuration finds a 0s written where 0 is no value.
func explicitZeroDuration(doc *yaml.Node) *Problem {
	for _, d := range defaultedDurations {
		n := nodeAt(doc, strings.Split(d.field, "."))
		if n == nil || n.Kind != yaml.ScalarNode || !isKeyPath(doc, d.field) {
			continue
		}
		if v, err := time.ParseDuration(n.Value); err == nil && v == 0 {
			return &Problem{Line: n.Line, Field: d.field, Msg: fmt.Sprintf("%s is not a value here: leave the field out for its default, %s", untrusted.Quote(n.Value), d.def)}
		}
	}
	return nil
}

// isKeyPath reports whether every key of the dotted path is written in
// doc: nodeAt stops at the deepest node there is.
func isKeyPath(doc *yaml.Node, path string) bool {
	n := content(doc)
	for _, seg := range strings.Split(path, ".") {
		if n.Kind != yaml.MappingNode {
			return false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return false
		}
		n = content(next)
	}
	return true
}
