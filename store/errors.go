package store

import "errors"

// Errors callers may test for with errors.Is. They come wrapped with the
// operation, peer and id, e.g.
// `store: put import "" of peer "mesh-b": empty resource id`.
var (
	ErrLocked       = errors.New("locked by another process")
	ErrEmptyPeer    = errors.New("empty peer name")
	ErrEmptyID      = errors.New("empty resource id")
	ErrEmptyService = errors.New("empty service")
	ErrKeyTooLong   = errors.New("longer than the 32768 bytes a key may have")
	ErrStaleTime    = errors.New("stale time outside 1678-2262, or exactly the Unix epoch")
	ErrEmptyBucket  = errors.New("empty bucket name")
	ErrEmptyKey     = errors.New("empty key")
	ErrCorrupt      = errors.New("corrupt record")
)
