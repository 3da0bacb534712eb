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

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
