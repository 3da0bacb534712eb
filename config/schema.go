package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/agnivade/levenshtein"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/meshfed/meshfed/internal/untrusted"
)

// SchemaJSON is the JSON Schema of the configuration, generated from the
// Go types (schema_test.go checks it is current; go test ./config -update
// rewrites it). Editors validate and complete with it, and Parse checks
// every file's shape with it, so it cannot drift from what is accepted.
//
//go:embed meshfed.schema.json
var SchemaJSON []byte

// DurationPattern is what a duration field takes: Go's time.ParseDuration
// syntax, such as 30s, 2m or 1h30m.
const DurationPattern = `^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))*$|^0$`

const schemaURL = "meshfed.schema.json"

var english = message.NewPrinter(language.English)

var compiledSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(SchemaJSON))
	if err != nil {
		return nil, fmt.Errorf("config: the embedded schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("config: the embedded schema: %w", err)
	}
	return c.Compile(schemaURL)
})

// checkShape finds every field that is unknown or of the wrong type, with
// its line, before the document is decoded: the decoder would stop at the
// first and name Go types.
func checkShape(doc *yaml.Node) ([]Problem, error) {
	sch, err := compiledSchema()
	if err != nil {
		return nil, err
	}
	err = sch.Validate(yamlValue(doc))
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, err
	}
	var out []Problem
	for _, leaf := range leaves(ve) {
		out = append(out, problemOf(sch, doc, leaf)...)
	}
	slices.SortStableFunc(out, func(a, b Problem) int { return a.Line - b.Line })
	return out, nil
}

// leaves are the innermost errors: the ones that say what is wrong.
func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// problemOf words one schema error for the file's reader: field paths as
// check writes them, expected types in words, a close field name for an
// unknown one.
func problemOf(root *jsonschema.Schema, doc *yaml.Node, e *jsonschema.ValidationError) []Problem {
	loc := e.InstanceLocation
	node := nodeAt(doc, loc)
	at := Problem{Field: fieldPath(loc), Line: node.Line}
	value := describe(node)
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		var out []Problem
		known := slices.Sorted(maps.Keys(schemaAt(root, loc).Properties))
		for _, name := range k.Properties {
			p := Problem{Field: fieldPath(append(slices.Clone(loc), name)), Line: keyLine(node, name), Msg: "unknown field"}
			if !untrusted.IsName(name) {
				// Not a field's name: in a file that is not a
				// configuration (a password file), it is a line.
				p.Field = fieldPath(loc)
				p.Msg = fmt.Sprintf("a key of %d bytes is no field; known here: %s", len(name), strings.Join(known, ", "))
				out = append(out, p)
				continue
			}
			if near := closest(name, known); near != "" {
				p.Msg += "; did you mean " + near + "?"
			} else {
				p.Msg += "; known here: " + strings.Join(known, ", ")
			}
			out = append(out, p)
		}
		return out
	case *kind.Type:
		s := schemaAt(root, loc)
		// The decoder reads any scalar as a string, and a duration from
		// the scalar's text.
		if node.Kind == yaml.ScalarNode && slices.Contains(k.Want, "string") && (s.Pattern == nil || s.Pattern.MatchString(node.Value)) {
			return nil
		}
		at.Msg = fmt.Sprintf("%s is not %s", value, want(s, k.Want))
	case *kind.Pattern:
		at.Msg = fmt.Sprintf("%s is not %s", value, want(schemaAt(root, loc), []string{"string"}))
	case *kind.Minimum, *kind.Maximum:
		at.Msg = fmt.Sprintf("%s is out of range (%s)", value, k.LocalizedString(english))
	default:
		at.Msg = e.ErrorKind.LocalizedString(english)
	}
	return []Problem{at}
}

// want names what a field takes, as its reader knows it.
func want(s *jsonschema.Schema, types []string) string {
	if s.Pattern != nil && s.Pattern.String() == DurationPattern {
		return "a duration such as 30s, 2m or 1h30m"
	}
	var words []string
	for _, t := range types {
		switch t {
		case "integer":
			words = append(words, "a whole number")
		case "number":
			words = append(words, "a number")
		case "boolean":
			words = append(words, "true or false")
		case "object":
			words = append(words, "a mapping (key: value lines, or {...})")
		case "array":
			words = append(words, "a list ([...], or lines starting with -)")
		case "string":
			words = append(words, "a string")
		default:
			words = append(words, t)
		}
	}
	return strings.Join(words, " or ")
}

// closest is the known name nearest to name, when near enough to be what
// was meant: at most a third of its letters off.
func closest(name string, known []string) string {
	best, bestD := "", len(name)/3+1
	for _, k := range known {
		if d := levenshtein.ComputeDistance(strings.ToLower(name), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// schemaAt follows the instance location loc down the schema.
func schemaAt(s *jsonschema.Schema, loc []string) *jsonschema.Schema {
	s = deref(s)
	for _, seg := range loc {
		switch {
		case s.Properties[seg] != nil:
			s = s.Properties[seg]
		case s.Items2020 != nil:
			s = s.Items2020
		default:
			if ap, ok := s.AdditionalProperties.(*jsonschema.Schema); ok {
				s = ap
			} else {
				return s
			}
		}
		s = deref(s)
	}
	return s
}

func deref(s *jsonschema.Schema) *jsonschema.Schema {
	for s.Ref != nil {
		s = s.Ref
	}
	return s
}

// fieldPath writes an instance location as check names fields:
// peers[0].dial, trustBundles.mesh-b.example.file. A key that is neither
// a field's name nor a trust domain's is shown by its length.
func fieldPath(loc []string) string {
	var b strings.Builder
	for _, seg := range loc {
		if _, err := strconv.Atoi(seg); err == nil {
			b.WriteString("[" + seg + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if _, err := spiffeid.TrustDomainFromString(seg); err != nil && !untrusted.IsName(seg) {
			seg = fmt.Sprintf("(a key of %d bytes)", len(seg))
		}
		b.WriteString(seg)
	}
	return b.String()
}

// nodeAt finds the node at an instance location, or the deepest one there
// is.
func nodeAt(n *yaml.Node, loc []string) *yaml.Node {
	n = content(n)
	for _, seg := range loc {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg {
					next = n.Content[i+1]
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(seg); err == nil && i < len(n.Content) {
				next = n.Content[i]
			}
		}
		if next == nil {
			return n
		}
		n = content(next)
	}
	return n
}

// content skips the document and alias wrappers.
func content(n *yaml.Node) *yaml.Node {
	for {
		switch {
		case n.Kind == yaml.DocumentNode && len(n.Content) > 0:
			n = n.Content[0]
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			n = n.Alias
		default:
			return n
		}
	}
}

// keyLine is the line of a mapping's key.
func keyLine(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i].Line
		}
	}
	return m.Line
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return untrusted.Quote(n.Value)
}

// yamlValue turns a YAML node into the values a JSON decoder makes, which
// is what the validator takes. A key set to null is left out, as the
// decoder leaves its field unset; a scalar takes the type YAML resolves
// it to.
func yamlValue(n *yaml.Node) any {
	n = content(n)
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := content(n.Content[i+1]); v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
				continue
			}
			m[n.Content[i].Value] = yamlValue(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, c := range n.Content {
			s[i] = yamlValue(c)
		}
		return s
	}
	var v any
	switch n.ShortTag() {
	case "!!int", "!!float", "!!bool", "!!null":
		if n.Decode(&v) == nil {
			return v
		}
	}
	return n.Value
}
