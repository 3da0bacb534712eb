package config

import (
	"encoding/json"
	"flag"
	"os"
	"path"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/invopop/jsonschema"
	validator "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite meshfed.schema.json from the Go types")

// generateSchema reflects the schema from the Go types, with their doc
// comments as descriptions.
func generateSchema(t *testing.T) []byte {
	t.Helper()
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		Anonymous:                  true,
		Mapper:                     schemaOf,
		// consul.Config would otherwise take the name of Config.
		Namer: func(t reflect.Type) string {
			if p := t.PkgPath(); p != "" && p != reflect.TypeFor[Config]().PkgPath() {
				return strings.ToUpper(path.Base(t.PkgPath())[:1]) + path.Base(t.PkgPath())[1:] + t.Name()
			}
			return t.Name()
		},
	}
	// Paths are joined to the base, so ../registry/consul names its
	// package.
	require.NoError(t, r.AddGoComments("github.com/meshfed/meshfed/config", "."))
	require.NoError(t, r.AddGoComments("github.com/meshfed/meshfed/config", "../registry/consul"))
	s := r.Reflect(&Config{})
	s.Title = "meshfed agent configuration"
	b, err := json.MarshalIndent(s, "", "  ")
	require.NoError(t, err)
	return append(b, '\n')
}

// schemaOf maps the types whose YAML form is not their Go form.
func schemaOf(t reflect.Type) *jsonschema.Schema {
	switch {
	case t == reflect.TypeFor[Duration](), t == reflect.TypeFor[time.Duration]():
		return &jsonschema.Schema{Type: "string", Pattern: DurationPattern, Description: "A duration such as 30s, 2m or 1h30m."}
	case t.Kind() == reflect.Uint32:
		return &jsonschema.Schema{Type: "integer", Minimum: "0", Maximum: "4294967295"}
	}
	return nil
}

func TestSchemaIsGeneratedFromTheTypes(t *testing.T) {
	got := generateSchema(t)
	if *update {
		require.NoError(t, os.WriteFile("meshfed.schema.json", got, 0o644))
	}
	require.Equal(t, string(got), string(SchemaJSON), "meshfed.schema.json is stale: go test ./config -run TestSchema -update")
}

// The documented example validates against the committed schema, as an
// editor would check it.
func TestExampleValidatesAgainstTheSchema(t *testing.T) {
	c := validator.NewCompiler()
	f, err := os.Open("meshfed.schema.json")
	require.NoError(t, err)
	defer f.Close()
	doc, err := validator.UnmarshalJSON(f)
	require.NoError(t, err)
	require.NoError(t, c.AddResource("meshfed.schema.json", doc))
	sch, err := c.Compile("meshfed.schema.json")
	require.NoError(t, err)

	b, err := os.ReadFile("../examples/meshfed.yaml")
	require.NoError(t, err)
	var example any
	require.NoError(t, yaml.Unmarshal(b, &example))
	require.NoError(t, sch.Validate(example))

	// And the schema refuses what Parse refuses, so the test above can fail.
	require.ErrorContains(t, sch.Validate(map[string]any{"trustDomain": "x", "xds": map[string]any{"holdof": "1s"}}), "additional properties 'holdof' not allowed")
	require.Error(t, sch.Validate(map[string]any{"federation": map[string]any{"grace": "soon"}}))
	require.True(t, strings.HasPrefix(string(SchemaJSON), "{"))
}
