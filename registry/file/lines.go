package file

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// index maps the document's field paths (services[0].ports[1].port) to the
// nodes and lines they are written at, so that an error found after decoding,
// or one the decoder reports by line only, can name both.
type index struct {
	lines   map[string]int // path → line of its key, or of its list item
	entries []entry        // every path, in document order
}

type entry struct {
	path    string
	keyLine int // the line of the key (or list item) that names the path
	node    *yaml.Node
	typ     reflect.Type // what the decoder reads the node into; nil if unknown
}

func newIndex(root *yaml.Node) *index {
	ix := &index{lines: map[string]int{}}
	ix.walk(root, "", root.Line, reflect.TypeFor[document]())
	return ix
}

func (ix *index) walk(n *yaml.Node, path string, line int, typ reflect.Type) {
	for typ != nil && typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if _, ok := ix.lines[path]; !ok {
		ix.lines[path] = line
	}
	ix.entries = append(ix.entries, entry{path: path, keyLine: line, node: n, typ: typ})
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			ix.walk(c, path, c.Line, typ)
		}
	case yaml.MappingNode:
		for k := 0; k+1 < len(n.Content); k += 2 {
			key := n.Content[k]
			p := key.Value
			if path != "" {
				p = path + "." + key.Value
			}
			ix.walk(n.Content[k+1], p, key.Line, fieldType(typ, key.Value))
		}
	case yaml.SequenceNode:
		var elem reflect.Type
		if typ != nil && typ.Kind() == reflect.Slice {
			elem = typ.Elem()
		}
		for i, c := range n.Content {
			ix.walk(c, path+"["+strconv.Itoa(i)+"]", c.Line, elem)
		}
	}
}

// fieldType is the type of key's value inside a value of type t.
func fieldType(t reflect.Type, key string) reflect.Type {
	switch {
	case t == nil:
	case t.Kind() == reflect.Map:
		return t.Elem()
	case t.Kind() == reflect.Struct:
		for f := range t.Fields() {
			if strings.Split(f.Tag.Get("yaml"), ",")[0] == key {
				return f.Type
			}
		}
	}
	return nil
}

// emptyItem finds a list item written as nothing ("-" alone), which the
// decoder drops without a word.
func (ix *index) emptyItem() *entry {
	for i, e := range ix.entries {
		if e.node.Kind == yaml.ScalarNode && e.node.Tag == "!!null" && strings.HasSuffix(e.path, "]") {
			return &ix.entries[i]
		}
	}
	return nil
}

// line is the line of path, or of the deepest part of it that is written
// (a missing field is reported at the item that lacks it).
func (ix *index) line(path string) int {
	for {
		if l, ok := ix.lines[path]; ok {
			return l
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut < 0 {
			return 1
		}
		path = path[:cut]
	}
}

var (
	lineRE      = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownRE   = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	dupKeyRE    = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	dupFieldRE  = regexp.MustCompile(`^field (\S+) already set in type \S+$`)
	mismatchRE  = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (\\S+)$")
	knownFields = fieldsOf(document{}, service{}, port{}, endpoint{})
)

// syntaxError puts the file name before yaml's "line N:" where it has one.
func syntaxError(name string, err error) error {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
}

// decodeError rewrites one of yaml's decoding messages, which give a line
// and Go type names, into one that gives the field path and the value.
func (ix *index) decodeError(name, msg string) error {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: %s", name, msg)
	}
	line, _ := strconv.Atoi(m[1])
	at := func(path, format string, args ...any) error {
		if path == "" {
			path = "the document"
		}
		return fmt.Errorf("%s:%d: %s: %s", name, line, path, fmt.Sprintf(format, args...))
	}
	msg = m[2]
	if m := unknownRE.FindStringSubmatch(msg); m != nil {
		return at(ix.keyAt(line, m[1]), "unknown field; known: %s", knownFields[m[2]])
	}
	if m := dupKeyRE.FindStringSubmatch(msg); m != nil {
		return at(ix.keyAt(line, m[1]), "duplicate key; first at line %s", m[2])
	}
	if m := dupFieldRE.FindStringSubmatch(msg); m != nil {
		return at(ix.keyAt(line, m[1]), "duplicate key")
	}
	if m := mismatchRE.FindStringSubmatch(msg); m != nil {
		e := ix.valueAt(line, m[1], m[2], m[3])
		if e == nil {
			return at("", "%s", msg)
		}
		return at(e.path, "got %s, want %s", describe(e.node), want(m[3]))
	}
	return fmt.Errorf("%s:%d: %s", name, line, msg)
}

// keyAt finds the path whose last key is key, written on line.
func (ix *index) keyAt(line int, key string) string {
	for _, e := range ix.entries {
		if e.keyLine == line && (e.path == key || strings.HasSuffix(e.path, "."+key)) {
			return e.path
		}
	}
	return key
}

// valueAt finds the value yaml could not decode: on line, read into a
// value of goType, of the kind its tag says, and for a scalar with the value
// yaml quotes (cut after 7 bytes when longer than 10).
func (ix *index) valueAt(line int, tag, quoted, goType string) *entry {
	for i := range ix.entries {
		e := &ix.entries[i]
		n := e.node
		if n.Line != line || n.Kind == yaml.DocumentNode || e.typ == nil || e.typ.String() != goType {
			continue
		}
		if tag == "!!seq" || tag == "!!map" {
			if n.Kind != yaml.ScalarNode {
				return e
			}
			continue
		}
		if n.Kind == yaml.ScalarNode && (n.Value == quoted || strings.HasSuffix(quoted, "...") && strings.HasPrefix(n.Value, strings.TrimSuffix(quoted, "..."))) {
			return e
		}
	}
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return strconv.Quote(n.Value)
}

// want names the Go type yaml decoded into as the file's reader knows it.
func want(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "file."):
		return "a mapping"
	case strings.TrimPrefix(goType, "*") == "int":
		return "a number"
	}
	return "a " + goType
}

// fieldsOf lists the yaml keys of each struct, by the type name yaml's
// messages use.
func fieldsOf(vs ...any) map[string]string {
	out := map[string]string{}
	for _, v := range vs {
		t := reflect.TypeOf(v)
		var keys []string
		for f := range t.Fields() {
			keys = append(keys, strings.Split(f.Tag.Get("yaml"), ",")[0])
		}
		out[t.String()] = strings.Join(keys, " ")
	}
	return out
}
