package runner

import (
	"cmp"
	"maps"
	"slices"

	"github.com/meshfed/meshfed/model"
)

// Every order that reaches an output (resources, ports handed out, logs) is
// a sorted one: Go maps iterate at random.

func sortKeys(keys []model.Key) { slices.SortFunc(keys, model.CompareKeys) }

// sortedKeys are m's keys in order.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

// sortedImports are the keys of the imports in order.
func sortedImports(m map[model.Key]*entry) []model.Key {
	keys := slices.Collect(maps.Keys(m))
	sortKeys(keys)
	return keys
}

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// minus is a without the elements of b.
func minus(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	drop := set(b)
	var out []string
	for _, s := range a {
		if !drop[s] {
			out = append(out, s)
		}
	}
	return out
}
