package untrusted

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// The bounds of aliases in a YAML document. A document may name a value
// once (&anchor) and repeat it (*anchor) where files share settings; a
// "billion laughs" repeats lists of repeats until 1.6 KB stand for a
// billion values. Both bounds are far above what a hand-written file
// uses, and low enough that what passes costs tens of MB at most once
// expanded.
const (
	// MaxAliases is how many aliases a document may hold: one per
	// service of a 10,000-service registry file that shares its consumers.
	MaxAliases = 10000
	// MaxAliasNodes is how many values (scalars, lists and mappings, each
	// counting one) aliases may add to the document as written.
	MaxAliasNodes = 250000
)

// ErrAliases is a document whose aliases go over MaxAliases or
// MaxAliasNodes.
var ErrAliases = errors.New("too many YAML aliases")

// ParseYAML parses a YAML document into its node tree, which holds aliases
// as references, and refuses it before anything expands them when they go
// over the bounds. A decoder may then expand what it returns safely.
//
// The file holds one document: a second, which a decoder would ignore
// without a word, is refused. An empty file is a node of Kind 0.
func ParseYAML(b []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, fmt.Errorf("line %d: a second YAML document; the file holds one", next.Line)
	case !errors.Is(err, io.EOF):
		return nil, err
	}
	if err := CheckAliases(&doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// CheckAliases counts the aliases under n and the values they stand for,
// without expanding any, and refuses a document over MaxAliases or
// MaxAliasNodes.
func CheckAliases(n *yaml.Node) error {
	c := counter{sizes: map[*yaml.Node]int{}}
	c.walk(n)
	switch {
	case c.aliases > MaxAliases:
		return fmt.Errorf("line %d: %w: more than %d; repeat the values instead", c.overAt, ErrAliases, MaxAliases)
	case c.added > MaxAliasNodes:
		return fmt.Errorf("line %d: %w: they would add more than %d values to the document (an alias of an alias multiplies them); repeat the values instead", c.overAt, ErrAliases, MaxAliasNodes)
	}
	return nil
}

// counter walks a node tree once. sizes memoizes the expanded size of each
// node an alias points to, so a chain of aliases of aliases is counted by
// multiplication, not by expansion; the sums saturate just over the bound.
type counter struct {
	aliases, added int
	overAt         int // the line where a bound was first passed
	sizes          map[*yaml.Node]int
}

const saturated = MaxAliasNodes + 1

// walk counts the aliases written under n and what they add.
func (c *counter) walk(n *yaml.Node) {
	if n == nil || c.overAt != 0 {
		return
	}
	if n.Kind == yaml.AliasNode {
		c.aliases++
		c.added = min(c.added+c.size(n.Alias), saturated)
		if c.aliases > MaxAliases || c.added > MaxAliasNodes {
			c.overAt = n.Line
		}
		return
	}
	for _, child := range n.Content {
		c.walk(child)
	}
}

// size is how many values n stands for once every alias in it is expanded,
// saturated. A node met again while it is being sized is a cycle, which
// the parser refuses but a tree built by hand may hold: it counts as
// endless.
func (c *counter) size(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	if s, ok := c.sizes[n]; ok {
		if s == sizing {
			return saturated
		}
		return s
	}
	c.sizes[n] = sizing
	s := 1
	if n.Kind == yaml.AliasNode {
		s = c.size(n.Alias)
	} else {
		for _, child := range n.Content {
			s = min(s+c.size(child), saturated)
		}
	}
	c.sizes[n] = s
	return s
}

// sizing marks a node whose size is being computed.
const sizing = -1
