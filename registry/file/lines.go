package file

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/meshfed/meshfed/internal/untrusted"
)

// index finds in the document the field paths (services[0].ports[1].port)
// and lines that a message names, for an error found after decoding, or
// one the decoder reports by line only. It keeps nothing: a registry file
// of 16 MiB holds over a million values, and a path for each would cost
// more than the document itself, for one message.
type index struct{ root *yaml.Node }

type entry struct {
	path    string
	keyLine int // the line of the key (or list item) that names the path
	node    *yaml.Node
	typ     reflect.Type // what the decoder reads the node into; nil if unknown
	last    string       // the path's last key, or its last index as [i]
}

func newIndex(root *yaml.Node) index { return index{root: root} }

// find walks the document in order and returns the first entry that match
// accepts, nil if none; the entry's path is written only then.
func (ix index) find(match func(*entry) bool) *entry {
	w := walker{match: match}
	w.walk(ix.root, ix.root.Line, reflect.TypeFor[Document]())
	return w.found
}

type walker struct {
	segs  []string // the path so far, a key (with its dot) or [i] each
	match func(*entry) bool
	found *entry
}

func (w *walker) walk(n *yaml.Node, line int, typ reflect.Type) bool {
	for typ != nil && typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	e := entry{keyLine: line, node: n, typ: typ}
	if len(w.segs) > 0 {
		e.last = strings.TrimPrefix(w.segs[len(w.segs)-1], ".")
	}
	if w.match(&e) {
		e.path = strings.TrimPrefix(strings.Join(w.segs, ""), ".")
		w.found = &e
		return true
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if w.walk(c, c.Line, typ) {
				return true
			}
		}
	case yaml.MappingNode:
		for k := 0; k+1 < len(n.Content); k += 2 {
			key := n.Content[k]
			w.segs = append(w.segs, "."+pathKey(key.Value))
			if w.walk(n.Content[k+1], key.Line, fieldType(typ, key.Value)) {
				return true
			}
			w.segs = w.segs[:len(w.segs)-1]
		}
	case yaml.SequenceNode:
		var elem reflect.Type
		if typ != nil && typ.Kind() == reflect.Slice {
			elem = typ.Elem()
		}
		for i, c := range n.Content {
			w.segs = append(w.segs, "["+strconv.Itoa(i)+"]")
			if w.walk(c, c.Line, elem) {
				return true
			}
			w.segs = w.segs[:len(w.segs)-1]
		}
	}
	return false
}

// line is the line of path, or of the deepest part of it that is written
// (a missing field is reported at the item that lacks it): the line of a
// key, or of a list item.
func (ix index) line(path string) int {
	n, line := ix.root, ix.root.Line
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for path != "" {
		switch {
		case n.Kind == yaml.SequenceNode && strings.HasPrefix(path, "["):
			end := strings.IndexByte(path, ']')
			i, err := strconv.Atoi(path[1:max(end, 1)])
			if end < 0 || err != nil || i >= len(n.Content) {
				return line
			}
			n, line, path = n.Content[i], n.Content[i].Line, path[end+1:]
		case n.Kind == yaml.MappingNode:
			path = strings.TrimPrefix(path, ".")
			next := -1
			for k := 0; k+1 < len(n.Content); k += 2 {
				key := pathKey(n.Content[k].Value)
				if strings.HasPrefix(path, key) && (len(path) == len(key) || path[len(key)] == '.' || path[len(key)] == '[') {
					next = k
					break
				}
			}
			if next < 0 {
				return line
			}
			line, path, n = n.Content[next].Line, path[len(pathKey(n.Content[next].Value)):], n.Content[next+1]
		default:
			return line
		}
	}
	return line
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

// pathKey is a key as a field path shows it: as written when it could be
// a field's name, else by its length, so that a path never carries a line
// of a file that is not a registry file (the keys of /etc/shadow are its
// lines).
func pathKey(k string) string {
	if untrusted.IsName(k) {
		return k
	}
	return fmt.Sprintf("(a key of %d bytes)", len(k))
}

// shapeProblem is a key the type it is read into does not have, or a list
// item written as nothing ("-" alone), which the decoder would drop
// without a word.
type shapeProblem struct {
	node *yaml.Node // the key, or the empty item
	in   reflect.Type
}

// firstShapeProblem walks n, read into a value of type typ, for the first
// shape problem in document order; nil if none. It follows aliases, which
// untrusted.ParseYAML has bounded, so that an alias cannot bring in a key
// its anchor's place allowed.
func firstShapeProblem(n *yaml.Node, typ reflect.Type) *shapeProblem {
	for typ != nil && typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := firstShapeProblem(c, typ); p != nil {
				return p
			}
		}
	case yaml.AliasNode:
		if n.Alias != nil {
			return firstShapeProblem(n.Alias, typ)
		}
	case yaml.MappingNode:
		for k := 0; k+1 < len(n.Content); k += 2 {
			key := n.Content[k]
			ft := fieldType(typ, key.Value)
			if ft == nil && typ != nil && typ.Kind() == reflect.Struct {
				return &shapeProblem{node: key, in: typ}
			}
			if p := firstShapeProblem(n.Content[k+1], ft); p != nil {
				return p
			}
		}
	case yaml.SequenceNode:
		var elem reflect.Type
		if typ != nil && typ.Kind() == reflect.Slice {
			elem = typ.Elem()
		}
		for _, c := range n.Content {
			if c.Kind == yaml.ScalarNode && c.Tag == "!!null" {
				return &shapeProblem{node: c}
			}
			if p := firstShapeProblem(c, elem); p != nil {
				return p
			}
		}
	}
	return nil
}

// shapeError words a shape problem with its field path and line.
func (ix index) shapeError(name string, p *shapeProblem) error {
	if p.in == nil {
		if e := ix.find(func(e *entry) bool { return e.node == p.node }); e != nil {
			return fmt.Errorf("%s:%d: %s: empty list item", name, e.keyLine, e.path)
		}
		// Under an alias, which the walk does not enter: the line says.
		return fmt.Errorf("%s:%d: empty list item", name, p.node.Line)
	}
	path := pathKey(p.node.Value)
	e := ix.find(func(e *entry) bool {
		return e.node.Kind == yaml.MappingNode && slices.Contains(e.node.Content, p.node)
	})
	if e != nil && e.path != "" {
		path = e.path + "." + path
	}
	return fmt.Errorf("%s:%d: %s: unknown field; known: %s", name, p.node.Line, path, knownFields[p.in.String()])
}

var (
	lineRE      = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	dupKeyRE    = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	dupFieldRE  = regexp.MustCompile(`^field (\S+) already set in type \S+$`)
	mismatchRE  = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (\\S+)$")
	knownFields = fieldsOf(Document{}, Service{}, Port{}, Endpoint{})
)

// syntaxError puts the file name before yaml's "line N:" where it has one.
func syntaxError(name string, err error) error {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], untrusted.Message(m[2]))
	}
	return fmt.Errorf("%s: %s", name, untrusted.Message(strings.TrimPrefix(err.Error(), "yaml: ")))
}

// decodeError rewrites one of yaml's decoding messages, which give a line
// and Go type names, into one that gives the field path and the value.
func (ix index) decodeError(name, msg string) error {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: %s", name, untrusted.Message(msg))
	}
	line, _ := strconv.Atoi(m[1])
	at := func(path, format string, args ...any) error {
		if path == "" {
			path = "the document"
		}
		return fmt.Errorf("%s:%d: %s: %s", name, line, path, fmt.Sprintf(format, args...))
	}
	msg = m[2]
	if m := dupKeyRE.FindStringSubmatch(msg); m != nil {
		return at(ix.keyAt(line, m[1]), "duplicate key; first at line %s", m[2])
	}
	if m := dupFieldRE.FindStringSubmatch(msg); m != nil {
		return at(ix.keyAt(line, m[1]), "duplicate key")
	}
	if m := mismatchRE.FindStringSubmatch(msg); m != nil {
		e := ix.valueAt(line, m[1], m[2], m[3])
		if e == nil {
			return at("", "%s", untrusted.Message(msg))
		}
		if e.path == "" && e.node.Kind == yaml.ScalarNode {
			// The whole file is one value: most likely another file
			// than a registry file, whose content is not repeated.
			return at("", "got a single value of %d bytes, want a mapping with services; is this a registry file?", len(e.node.Value))
		}
		return at(e.path, "got %s, want %s", describe(e.node), want(m[3]))
	}
	return fmt.Errorf("%s:%d: %s", name, line, untrusted.Message(msg))
}

// keyAt finds the path whose last key is key, written on line.
func (ix index) keyAt(line int, key string) string {
	if e := ix.find(func(e *entry) bool { return e.keyLine == line && e.last == pathKey(key) }); e != nil {
		return e.path
	}
	return pathKey(key)
}

// valueAt finds the value yaml could not decode: on line, read into a
// value of goType, of the kind its tag says, and for a scalar with the value
// yaml quotes (cut after 7 bytes when longer than 10).
func (ix index) valueAt(line int, tag, quoted, goType string) *entry {
	return ix.find(func(e *entry) bool {
		n := e.node
		if n.Line != line || n.Kind == yaml.DocumentNode || e.typ == nil || e.typ.String() != goType {
			return false
		}
		if tag == "!!seq" || tag == "!!map" {
			return n.Kind != yaml.ScalarNode
		}
		return n.Kind == yaml.ScalarNode && (n.Value == quoted || strings.HasSuffix(quoted, "...") && strings.HasPrefix(n.Value, strings.TrimSuffix(quoted, "...")))
	})
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
