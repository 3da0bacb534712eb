package model

import "cmp"

// Kind says which side of a catalog a key names.
type Kind uint8

// The kinds of catalog entries.
const (
	KindImport Kind = iota + 1
	KindExport
)

// String is the kind as logs and metrics label it.
func (k Kind) String() string {
	switch k {
	case KindImport:
		return "import"
	case KindExport:
		return "export"
	}
	return "unknown"
}

// Key names one service of a catalog: an import (its peer and resource
// id) or an export (its name in ID, no peer).
type Key struct {
	Kind Kind
	Peer string
	ID   string
}

// ImportKey is the key of imp.
func ImportKey(imp Import) Key {
	return Key{Kind: KindImport, Peer: imp.Peer, ID: imp.ResourceID}
}

// ExportKey is the key of the export called name.
func ExportKey(name string) Key { return Key{Kind: KindExport, ID: name} }

// CompareKeys orders keys: imports before exports, then by peer, then by
// id. Every order of keys that reaches an output is this one: Go maps
// iterate at random.
func CompareKeys(a, b Key) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.ID, b.ID))
}
