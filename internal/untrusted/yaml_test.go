package untrusted

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// laughs is a "billion laughs": n levels of lists, each repeating the
// level below nine times, so that about 1.6 KB stand for 9^n values.
func laughs(n int) string {
	var b strings.Builder
	b.WriteString(`a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]` + "\n")
	for i := 1; i < n; i++ {
		refs := strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 8) + fmt.Sprintf("*a%d", i-1)
		fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, refs)
	}
	return b.String()
}

func TestParseYAMLRefusesAnAliasBombBeforeExpandingIt(t *testing.T) {
	bomb := laughs(15)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := ParseYAML([]byte(bomb))
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, ErrAliases)
	require.EqualError(t, err, "line 6: too many YAML aliases: they would add more than 250000 values to the document (an alias of an alias multiplies them); repeat the values instead")
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "bytes allocated refusing %d bytes of YAML", len(bomb))
}

func TestParseYAMLCountsAliases(t *testing.T) {
	// As many aliases as allowed, each adding one value: the shared
	// consumers of a large registry file.
	var b strings.Builder
	b.WriteString("all: &all mesh-b\nservices:\n")
	for range MaxAliases {
		b.WriteString("  - *all\n")
	}
	_, err := ParseYAML([]byte(b.String()))
	require.NoError(t, err)
	b.WriteString("  - *all\n")
	_, err = ParseYAML([]byte(b.String()))
	require.EqualError(t, err, fmt.Sprintf("line %d: too many YAML aliases: more than %d; repeat the values instead", MaxAliases+3, MaxAliases))

	// What aliases add, an alias of aliases multiplied, counted exactly
	// up to the bound.
	doc := laughs(3) // a0: 10 values, a1: 1 + 9×10 = 91, a2: 1 + 9×91 = 820
	n, err := ParseYAML([]byte(doc))
	require.NoError(t, err)
	c := counter{sizes: map[*yaml.Node]int{}}
	c.walk(n)
	require.Equal(t, 9*10+9*91, c.added)
	require.Equal(t, 18, c.aliases)
}

func TestParseYAMLSyntaxError(t *testing.T) {
	_, err := ParseYAML([]byte("a: [1, 2\n"))
	require.EqualError(t, err, "yaml: line 1: did not find expected ',' or ']'")
}

// A hand-built tree may hold a cycle, which the parser would refuse: it
// counts as endless rather than looping.
func TestCheckAliasesCycle(t *testing.T) {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Line: 1}
	seq.Content = []*yaml.Node{{Kind: yaml.AliasNode, Alias: seq, Line: 2}}
	require.ErrorIs(t, CheckAliases(seq), ErrAliases)
}

func TestParseYAMLOneDocument(t *testing.T) {
	_, err := ParseYAML([]byte("a: 1\n---\nb: 2\n"))
	require.EqualError(t, err, "line 2: a second YAML document; the file holds one")
	for _, empty := range []string{"", "# nothing yet\n"} {
		n, err := ParseYAML([]byte(empty))
		require.NoError(t, err)
		require.Equal(t, yaml.Kind(0), n.Kind)
	}
}
