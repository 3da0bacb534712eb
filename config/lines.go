package config

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LineOf finds the line of the field at path (such as peers[1].dial or
// trustBundles.mesh-b.example.file) in the document, or of the deepest
// part of the path that is written there; 0 if none is.
func LineOf(doc *yaml.Node, path string) int {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for path != "" {
		switch {
		case strings.HasPrefix(path, "["):
			end := strings.IndexByte(path, ']')
			i, err := strconv.Atoi(path[1:max(end, 1)])
			if end < 0 || err != nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return line
			}
			n, path = n.Content[i], path[end+1:]
		case n.Kind == yaml.MappingNode:
			path = strings.TrimPrefix(path, ".")
			next := -1
			// Keys may hold dots (trust domains do): take the longest key
			// the path starts with.
			for k := 0; k+1 < len(n.Content); k += 2 {
				key := n.Content[k].Value
				if strings.HasPrefix(path, key) && (len(path) == len(key) || path[len(key)] == '.' || path[len(key)] == '[') &&
					(next < 0 || len(key) > len(n.Content[next].Value)) {
					next = k
				}
			}
			if next < 0 {
				return line
			}
			line = n.Content[next].Line
			path = path[len(n.Content[next].Value):]
			n = n.Content[next+1]
			continue
		default:
			return line
		}
		line = n.Line
	}
	return line
}
