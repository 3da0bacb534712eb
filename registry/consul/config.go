package consul

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
)

// Config says how to reach Consul and what to do there. It is plain YAML so
// that the agent's configuration can embed it as is.
type Config struct {
	// Address is host:port or http(s)://host:port; default 127.0.0.1:8500.
	Address    string `yaml:"address"`
	Datacenter string `yaml:"datacenter"`
	// TokenFile holds the ACL token; without it, $CONSUL_HTTP_TOKEN. The
	// token is never logged, nor put in an error.
	TokenFile string     `yaml:"tokenFile"`
	TLS       *TLSConfig `yaml:"tls"`
	// Export selects Consul services to export; nil exports nothing.
	Export *ExportConfig `yaml:"export"`
	// Import registers imported services in Consul; nil registers nothing
	// (import: {} registers them with the defaults).
	Import *ImportConfig `yaml:"import"`
	// Domain is Consul's DNS domain, in the names Consul gives imports
	// (<name>.service.<domain>); default consul.
	Domain string `yaml:"domain"`
	// Connect joins Consul Connect both ways; nil leaves it out.
	Connect *ConnectConfig `yaml:"connect"`
}

// ConnectConfig says how the gateways join Consul Connect: its sidecars
// reach the imports at the egress port Port, as the Connect proxy
// meshfed registers for each import; the ingress reaches the Connect
// sidecars of exported services as the Consul service Identity.
type ConnectConfig struct {
	// Port is the egress gateway's port for Connect sidecars; without
	// it, only the ingress joins Connect.
	Port uint32 `yaml:"port"`
	// Identity is the Consul service the ingress is to Connect sidecars
	// (default meshfed-ingress): intentions must allow it.
	Identity string `yaml:"identity"`
}

// DefaultConnectIdentity is ConnectConfig.Identity's default.
const DefaultConnectIdentity = "meshfed-ingress"

// TLSConfig is the TLS of the Consul HTTP API.
type TLSConfig struct {
	CAFile     string `yaml:"caFile"`
	CertFile   string `yaml:"certFile"`
	KeyFile    string `yaml:"keyFile"`
	ServerName string `yaml:"serverName"`
}

// ExportConfig selects the Consul services to export: those named, those
// with an instance carrying the tag, and those with an instance carrying
// the meta key=value. Only the instances selected, and passing their
// checks, become endpoints.
type ExportConfig struct {
	Services []string `yaml:"services"`
	Tag      string   `yaml:"tag"`  // such as meshfed-export
	Meta     string   `yaml:"meta"` // key=value, such as meshfed-export=true
	// Consumers are the peers allowed to import each service, unless the
	// service's meta meshfed-consumers=a,b says otherwise.
	Consumers []string `yaml:"consumers"`
	// Mode is terminate (default) or passthrough.
	Mode string `yaml:"mode"`
	// DomainSuffix makes each service's fqdn: <service>.<domainSuffix>.
	DomainSuffix string `yaml:"domainSuffix"`
	// OnEmpty is what happens to a service that loses its last passing
	// instance, or leaves the catalog: delete (default) withdraws it; keep
	// goes on exporting its last endpoints (see the package doc).
	OnEmpty string `yaml:"onEmpty"`
	// MaxAnswerBytes bounds each answer Consul gives the export: one
	// service's passing instances with their checks, or its Connect
	// proxies, the list of services, or the list of every check of the
	// datacenter (default 4 MiB: some 1,300 instances of 3.2 KB with two
	// checks each, 70,000 service names with a tag, or 10,000 checks of
	// 410 bytes). A larger answer is refused as an unreachable Consul is:
	// the last state stays (of that service, or of every check), and its
	// query is retried with a backoff. 64 KiB to 256 MiB.
	MaxAnswerBytes int64 `yaml:"maxAnswerBytes"`
}

// ImportConfig says how imported services are named in Consul.
type ImportConfig struct {
	// NameTemplate makes the Consul service name from {name} (the owner's
	// service name) and {peer}; default "{name}-{peer}".
	NameTemplate string `yaml:"nameTemplate"`
	// NodePrefix makes the node of each peer's services: <prefix><peer>;
	// default "meshfed-".
	NodePrefix string `yaml:"nodePrefix"`
	// AntiEntropy is how often the catalog is compared with the imports
	// even when they did not change, so that what Consul lost (a restart
	// without its data, a deregistration by hand) is registered again and
	// what meshfed registered and no longer imports is removed; default
	// 30s.
	AntiEntropy time.Duration `yaml:"antiEntropy"`
}

// DefaultAntiEntropy is ImportConfig.AntiEntropy's default.
const DefaultAntiEntropy = 30 * time.Second

// DefaultMaxAnswerBytes is ExportConfig.MaxAnswerBytes's default, and its
// bounds: an answer about one instance takes about 3.2 KB (node, service
// and two checks), so 64 KiB still holds twenty; decoding an answer takes
// some 4.5 times its size, so past 256 MiB one would cost over a GB.
const (
	DefaultMaxAnswerBytes = 4 << 20
	minAnswerBytes        = 64 << 10
	maxAnswerBytes        = 256 << 20
)

// The OnEmpty values.
const (
	OnEmptyDelete = "delete"
	OnEmptyKeep   = "keep"
)

// Default sets every default; Check expects them set.
func (c *Config) Default() {
	if c.Address == "" {
		c.Address = "127.0.0.1:8500"
	}
	if c.Domain == "" {
		c.Domain = "consul"
	}
	if cc := c.Connect; cc != nil && cc.Identity == "" {
		cc.Identity = DefaultConnectIdentity
	}
	if e := c.Export; e != nil {
		if e.Mode == "" {
			e.Mode = string(model.Terminate)
		}
		if e.OnEmpty == "" {
			e.OnEmpty = OnEmptyDelete
		}
		if e.MaxAnswerBytes == 0 {
			e.MaxAnswerBytes = DefaultMaxAnswerBytes
		}
	}
	if i := c.Import; i != nil {
		if i.NameTemplate == "" {
			i.NameTemplate = "{name}-{peer}"
		}
		if i.NodePrefix == "" {
			i.NodePrefix = "meshfed-"
		}
		if i.AntiEntropy == 0 {
			i.AntiEntropy = DefaultAntiEntropy
		}
	}
}

var placeholder = regexp.MustCompile(`\{[^}]*\}`)

// Check refuses what cannot work, as a *model.FieldError whose path is
// relative to the Config (export.domainSuffix), for the embedding
// configuration to prefix and place.
func (c *Config) Check() error {
	bad := func(path, format string, args ...any) error {
		return &model.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
	}
	if _, _, err := splitAddress(c.Address); err != nil {
		return bad("address", "%s: %v", untrusted.Quote(c.Address), err)
	}
	if t := c.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		return bad("tls", "certFile and keyFile go together")
	}
	if !registry.IsFQDN("x." + c.Domain) {
		return bad("domain", "%s is not a lowercase DNS name", untrusted.Quote(c.Domain))
	}
	if c.Datacenter != "" && !registry.IsLabel(c.Datacenter) {
		return bad("datacenter", "%s is not a DNS label", untrusted.Quote(c.Datacenter))
	}
	if cc := c.Connect; cc != nil {
		if cc.Port > 65535 {
			return bad("connect.port", "%d is not a port", cc.Port)
		}
		if !registry.IsLabel(cc.Identity) {
			return bad("connect.identity", "%s is not a Consul service name (a DNS label)", untrusted.Quote(cc.Identity))
		}
		if cc.Port != 0 && c.Import == nil {
			return bad("connect.port", "needs import: sidecars find the imports by the Connect proxies registered for them")
		}
	}
	if e := c.Export; e != nil {
		if len(e.Services) == 0 && e.Tag == "" && e.Meta == "" {
			return bad("export", "selects nothing: set services, tag or meta")
		}
		for i, s := range e.Services {
			if !registry.IsLabel(s) {
				return bad(fmt.Sprintf("export.services[%d]", i), "%s is not a DNS label, which an exported service name must be", untrusted.Quote(s))
			}
		}
		if k, _, ok := strings.Cut(e.Meta, "="); e.Meta != "" && (!ok || k == "") {
			return bad("export.meta", "%s is not key=value", untrusted.Quote(e.Meta))
		}
		for i, p := range e.Consumers {
			if p == "" {
				return bad(fmt.Sprintf("export.consumers[%d]", i), "empty")
			}
		}
		if e.Mode != string(model.Terminate) && e.Mode != string(model.Passthrough) {
			return bad("export.mode", "%s is not one of terminate passthrough", untrusted.Quote(e.Mode))
		}
		if e.DomainSuffix == "" {
			return bad("export.domainSuffix", "required: fqdns are <service>.<domainSuffix>")
		}
		if !registry.IsFQDN("x." + e.DomainSuffix) {
			return bad("export.domainSuffix", "%s is not a lowercase DNS name", untrusted.Quote(e.DomainSuffix))
		}
		if e.OnEmpty != OnEmptyDelete && e.OnEmpty != OnEmptyKeep {
			return bad("export.onEmpty", "%s is not one of delete keep", untrusted.Quote(e.OnEmpty))
		}
		if n := e.MaxAnswerBytes; n < minAnswerBytes || n > maxAnswerBytes {
			return bad("export.maxAnswerBytes", "%d is out of range %d-%d (64 KiB to 256 MiB)", n, minAnswerBytes, maxAnswerBytes)
		}
	}
	if i := c.Import; i != nil {
		if !strings.Contains(i.NameTemplate, "{name}") {
			return bad("import.nameTemplate", "%s lacks {name}: every import would get one name", untrusted.Quote(i.NameTemplate))
		}
		for _, p := range placeholder.FindAllString(i.NameTemplate, -1) {
			if p != "{name}" && p != "{peer}" {
				return bad("import.nameTemplate", "%s: unknown placeholder %s; known: {name} {peer}", untrusted.Quote(i.NameTemplate), p)
			}
		}
		if !registry.IsLabel(i.NodePrefix + "x") {
			return bad("import.nodePrefix", "%s does not make DNS labels", untrusted.Quote(i.NodePrefix))
		}
		if i.AntiEntropy < time.Second {
			return bad("import.antiEntropy", "%s is less than 1s", i.AntiEntropy)
		}
	}
	return nil
}

// splitAddress returns the scheme and host:port of an address.
func splitAddress(addr string) (scheme, hostPort string, err error) {
	scheme, hostPort = "http", addr
	if s, rest, ok := strings.Cut(addr, "://"); ok {
		if s != "http" && s != "https" {
			return "", "", fmt.Errorf("scheme %s is not http or https", untrusted.Quote(s))
		}
		scheme, hostPort = s, rest
	}
	if _, _, err := net.SplitHostPort(hostPort); err != nil {
		return "", "", err
	}
	return scheme, hostPort, nil
}

// client builds the API client. c is defaulted and checked. maxAnswer,
// when positive, bounds each answer's body (see boundedTransport).
func (c *Config) client(maxAnswer int64) (*api.Client, error) {
	cl, _, err := c.boundedClient(maxAnswer, 0)
	return cl, err
}

// boundedClient is client with at most maxConns connections to Consul
// when positive, idle ones included and kept for reuse: a request past
// them waits for one to be free. It returns the client's transport too,
// whose idle connections its owner closes when done.
func (c *Config) boundedClient(maxAnswer int64, maxConns int) (*api.Client, *http.Transport, error) {
	token, err := c.token()
	if err != nil {
		return nil, nil, err
	}
	scheme, hostPort, err := splitAddress(c.Address)
	if err != nil {
		return nil, nil, err
	}
	// DefaultConfig brings the usual CONSUL_* environment where this
	// configuration is silent.
	ac := api.DefaultConfig()
	ac.Address, ac.Scheme, ac.Datacenter = hostPort, scheme, c.Datacenter
	if token != "" {
		ac.Token = token
	}
	if t := c.TLS; t != nil {
		if scheme == "http" && !strings.Contains(c.Address, "://") {
			ac.Scheme = "https"
		}
		ac.TLSConfig = api.TLSConfig{Address: t.ServerName, CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
	}
	if maxConns > 0 {
		ac.Transport.MaxConnsPerHost = maxConns
		// Idle connections are reused rather than closed past the
		// default (the cores + 1) and opened again at the next burst.
		ac.Transport.MaxIdleConnsPerHost = maxConns
	}
	if maxAnswer > 0 {
		hc, err := api.NewHttpClient(ac.Transport, ac.TLSConfig)
		if err != nil {
			return nil, nil, fmt.Errorf("consul client: %w", err)
		}
		hc.Transport = boundedTransport{next: hc.Transport, max: maxAnswer}
		ac.HttpClient = hc
	}
	cl, err := api.NewClient(ac)
	if err != nil {
		return nil, nil, fmt.Errorf("consul client: %w", err)
	}
	return cl, ac.Transport, nil
}

// token reads the ACL token. Its errors name the file, never the content.
func (c *Config) token() (string, error) {
	if c.TokenFile == "" {
		return os.Getenv("CONSUL_HTTP_TOKEN"), nil
	}
	// A regular file, wherever a link leads (a mounted secret), of a
	// bounded size: a pipe or a device would hang the agent's start.
	b, err := untrusted.File{AnyLink: true, Limit: "the bound of a token file"}.Read(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("consul token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("consul token: %s is empty", c.TokenFile)
	}
	return t, nil
}
