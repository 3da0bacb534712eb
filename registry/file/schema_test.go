package file

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/invopop/jsonschema"
	validator "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/meshfed/meshfed/model"
)

var update = flag.Bool("update", false, "rewrite registry.schema.json from the Go types")

// generateSchema reflects the schema from the Go types, with their doc
// comments as descriptions, as config's is.
func generateSchema(t *testing.T) []byte {
	t.Helper()
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		Anonymous:                  true,
	}
	require.NoError(t, r.AddGoComments("github.com/meshfed/meshfed/registry/file", "."))
	s := r.Reflect(&Document{})
	s.Title = "meshfed registry file"
	b, err := json.MarshalIndent(s, "", "  ")
	require.NoError(t, err)
	return append(b, '\n')
}

func TestSchemaIsGeneratedFromTheTypes(t *testing.T) {
	got := generateSchema(t)
	if *update {
		require.NoError(t, os.WriteFile("registry.schema.json", got, 0o644))
	}
	require.Equal(t, string(got), string(SchemaJSON), "registry.schema.json is stale: go test ./registry/file -run TestSchema -update")
}

func compileSchema(t *testing.T) *validator.Schema {
	t.Helper()
	doc, err := validator.UnmarshalJSON(bytes.NewReader(SchemaJSON))
	require.NoError(t, err)
	c := validator.NewCompiler()
	require.NoError(t, c.AddResource("registry.schema.json", doc))
	sch, err := c.Compile("registry.schema.json")
	require.NoError(t, err)
	return sch
}

// validate checks a YAML document against the schema, as an editor would.
func validate(t *testing.T, sch *validator.Schema, y string) error {
	t.Helper()
	var v any
	require.NoError(t, yaml.Unmarshal([]byte(y), &v))
	return sch.Validate(v)
}

// The schema's protocols are the model's, in its order: a protocol added
// to the model must be added to Port's enum tag.
func TestSchemaProtocolsAreTheModels(t *testing.T) {
	var s struct {
		Defs map[string]struct {
			Properties map[string]struct {
				Enum []string `json:"enum"`
			} `json:"properties"`
		} `json:"$defs"`
	}
	require.NoError(t, json.Unmarshal(SchemaJSON, &s))
	var want []string
	for _, p := range model.Protocols {
		want = append(want, string(p))
	}
	require.Equal(t, want, s.Defs["Port"].Properties["protocol"].Enum)
	require.Equal(t, []string{string(model.Terminate), string(model.Passthrough)}, s.Defs["Service"].Properties["mode"].Enum)
}

// The schema refuses what Parse refuses for its shape, so that an editor
// marks it before the agent does.
func TestSchemaRefusesWhatParseRefuses(t *testing.T) {
	sch := compileSchema(t)
	base := "services:\n  - name: a\n    fqdn: a.mesh-a.example\n    consumers: [mesh-b]\n    ports:\n      - {name: http, port: 80, protocol: HTTP, endpoints: [{address: 127.0.0.1, port: 8080}]}\n"
	require.NoError(t, validate(t, sch, base))
	_, err := Parse([]byte(base), "services.yaml")
	require.NoError(t, err)
	for _, c := range []struct{ name, from, to, schemaErr, parseErr string }{
		{"unknown field", "fqdn:", "fqnd:", "additional properties 'fqnd' not allowed", "services[0].fqnd: unknown field"},
		{"protocol", "HTTP,", "FOO,", "value must be one of", `services[0].ports[0].protocol: "FOO" is not one of`},
		{"mode", "    consumers:", "    mode: transparent\n    consumers:", "value must be one of", `services[0].mode: "transparent"`},
		{"port range", "port: 8080", "port: 65536", "maximum", "services[0].ports[0].endpoints[0].port: 65536 is not a port 1..65535"},
		{"port type", "port: 80,", "port: http,", "got string, want integer", `services[0].ports[0].port: got "http", want a number`},
		{"no consumers", "[mesh-b]", "[]", "minItems", "services[0].consumers: required: at least one peer"},
		{"no endpoints", "endpoints: [{address: 127.0.0.1, port: 8080}]", "endpoints: []", "minItems", "services[0].ports[0].endpoints: required: at least one endpoint"},
		{"no fqdn", "    fqdn: a.mesh-a.example\n", "", "missing property 'fqdn'", "services[0].fqdn: required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			y := strings.Replace(base, c.from, c.to, 1)
			require.NotEqual(t, base, y)
			require.ErrorContains(t, validate(t, sch, y), c.schemaErr)
			_, err := Parse([]byte(y), "services.yaml")
			require.ErrorContains(t, err, c.parseErr)
		})
	}
}

// readmeExample is the registry file the README shows: the first yaml
// block of its section on the registry file.
func readmeExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(b), "\n### The registry file\n")
	require.True(t, ok, "README.md has no section \"### The registry file\"")
	_, block, ok := strings.Cut(section, "\n```yaml\n")
	require.True(t, ok, "README.md's registry file section has no yaml block")
	block, _, ok = strings.Cut(block, "\n```\n")
	require.True(t, ok)
	return block + "\n"
}

// The README's example is a registry file that Parse reads and the schema
// accepts, and it shows every field the schema has.
func TestREADMEExampleIsCompleteAndValid(t *testing.T) {
	y := readmeExample(t)
	exports, err := Parse([]byte(y), "README.md")
	require.NoError(t, err)
	require.NotEmpty(t, exports)
	require.NoError(t, validate(t, compileSchema(t), y))

	// Every key of every type, in some entry of the example.
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(y), &doc))
	seen := map[string]bool{}
	var walk func(n *yaml.Node, typ reflect.Type)
	walk = func(n *yaml.Node, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		switch n.Kind {
		case yaml.DocumentNode:
			walk(n.Content[0], typ)
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, typ)
			}
		case yaml.MappingNode:
			if typ.Kind() != reflect.Struct {
				return
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				for f := range typ.Fields() {
					if f.Tag.Get("yaml") == n.Content[i].Value {
						seen[typ.Name()+"."+n.Content[i].Value] = true
						walk(n.Content[i+1], f.Type)
					}
				}
			}
		}
	}
	walk(&doc, reflect.TypeFor[Document]())
	var missing []string
	for _, typ := range []reflect.Type{reflect.TypeFor[Document](), reflect.TypeFor[Service](), reflect.TypeFor[Port](), reflect.TypeFor[Endpoint]()} {
		for f := range typ.Fields() {
			if k := typ.Name() + "." + f.Tag.Get("yaml"); !seen[k] {
				missing = append(missing, k)
			}
		}
	}
	slices.Sort(missing)
	require.Empty(t, missing, "fields the README's example registry file does not show")

	// Its modeline points editors at the schema.
	require.True(t, strings.HasPrefix(y, "# yaml-language-server: $schema=registry.schema.json\n"), y)
}

// The commented example beside the tests is valid for the schema too.
func TestTestdataExampleValidatesAgainstTheSchema(t *testing.T) {
	b, err := os.ReadFile("testdata/services.yaml")
	require.NoError(t, err)
	require.NoError(t, validate(t, compileSchema(t), string(b)))
}
