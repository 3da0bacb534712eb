package consul

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestConfigCheck(t *testing.T) {
	export := func(f func(e *ExportConfig)) Config {
		e := ExportConfig{Tag: "meshfed-export", DomainSuffix: "mesh-a.example"}
		f(&e)
		return Config{Export: &e}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"address", Config{Address: "consul"}, `address: "consul": address consul: missing port in address`},
		{"scheme", Config{Address: "unix:///run/consul.sock"}, `address: "unix:///run/consul.sock": scheme "unix" is not http or https`},
		{"tls", Config{TLS: &TLSConfig{CertFile: "c.pem"}}, "tls: certFile and keyFile go together"},
		{"selects nothing", export(func(e *ExportConfig) { e.Tag = "" }), "export: selects nothing: set services, tag or meta"},
		{"service name", export(func(e *ExportConfig) { e.Services = []string{"Web"} }), `export.services[0]: "Web" is not a DNS label`},
		{"meta", export(func(e *ExportConfig) { e.Meta = "meshfed-export" }), `export.meta: "meshfed-export" is not key=value`},
		{"consumer", export(func(e *ExportConfig) { e.Consumers = []string{""} }), "export.consumers[0]: empty"},
		{"mode", export(func(e *ExportConfig) { e.Mode = "proxy" }), `export.mode: "proxy" is not one of terminate passthrough`},
		{"domain missing", export(func(e *ExportConfig) { e.DomainSuffix = "" }), "export.domainSuffix: required"},
		{"domain", export(func(e *ExportConfig) { e.DomainSuffix = "Mesh.example" }), `export.domainSuffix: "Mesh.example" is not a lowercase DNS name`},
		{"onEmpty", export(func(e *ExportConfig) { e.OnEmpty = "hold" }), `export.onEmpty: "hold" is not one of delete keep`},
		{"answer bound too small", export(func(e *ExportConfig) { e.MaxAnswerBytes = 65535 }), `export.maxAnswerBytes: 65535 is out of range 65536-268435456 (64 KiB to 256 MiB)`},
		{"answer bound too large", export(func(e *ExportConfig) { e.MaxAnswerBytes = 256<<20 + 1 }), `export.maxAnswerBytes: 268435457 is out of range 65536-268435456 (64 KiB to 256 MiB)`},
		{"template name", Config{Import: &ImportConfig{NameTemplate: "{peer}"}}, `import.nameTemplate: "{peer}" lacks {name}`},
		{"template placeholder", Config{Import: &ImportConfig{NameTemplate: "{name}-{fqdn}"}}, `import.nameTemplate: "{name}-{fqdn}": unknown placeholder {fqdn}; known: {name} {peer}`},
		{"node prefix", Config{Import: &ImportConfig{NodePrefix: "mesh_"}}, `import.nodePrefix: "mesh_" does not make DNS labels`},
		{"anti-entropy too often", Config{Import: &ImportConfig{AntiEntropy: time.Millisecond}}, `import.antiEntropy: 1ms is less than 1s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Default()
			require.ErrorContains(t, tc.cfg.Check(), tc.want)
		})
	}
}

func TestConfigDefaultsAndYAML(t *testing.T) {
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(`
address: https://consul.internal:8501
datacenter: dc2
export: {tag: meshfed-export, domainSuffix: mesh-a.example}
import: {}
`))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&c))
	c.Default()
	require.NoError(t, c.Check())
	require.Equal(t, "terminate", c.Export.Mode)
	require.Equal(t, OnEmptyDelete, c.Export.OnEmpty)
	require.Equal(t, int64(4<<20), c.Export.MaxAnswerBytes)
	require.Equal(t, &ImportConfig{NameTemplate: "{name}-{peer}", NodePrefix: "meshfed-", AntiEntropy: 30 * time.Second}, c.Import)

	var empty Config
	empty.Default()
	require.Equal(t, "127.0.0.1:8500", empty.Address)
	require.NoError(t, empty.Check())
}

func TestConfigToken(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CONSUL_HTTP_TOKEN", "from-env")
	tok, err := (&Config{}).token()
	require.NoError(t, err)
	require.Equal(t, "from-env", tok)

	file := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(file, []byte("  from-file\n"), 0o600))
	tok, err = (&Config{TokenFile: file}).token()
	require.NoError(t, err)
	require.Equal(t, "from-file", tok)

	require.NoError(t, os.WriteFile(file, []byte("\n"), 0o600))
	_, err = (&Config{TokenFile: file}).token()
	require.EqualError(t, err, "consul token: "+file+" is empty")

	_, err = NewSink(Config{TokenFile: filepath.Join(dir, "missing"), Import: &ImportConfig{}}, nil)
	require.ErrorContains(t, err, "consul token: open "+filepath.Join(dir, "missing"))

	// A pipe nobody writes to would hang the start.
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	_, err = (&Config{TokenFile: fifo}).token()
	require.EqualError(t, err, "consul token: "+fifo+" is a named pipe, not a regular file")
}

func TestNextIndex(t *testing.T) {
	require.Equal(t, uint64(7), nextIndex(5, 7))
	require.Equal(t, uint64(7), nextIndex(7, 7))
	require.Equal(t, uint64(0), nextIndex(7, 3), "backwards: start over")
	require.Equal(t, uint64(1), nextIndex(0, 0), "0 never blocks")
}
