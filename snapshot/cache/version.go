package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
)

// contentVersion names the content of a resource. It must be equal across
// processes, so that an Envoy reconnecting to a restarted agent with its
// initial_resource_versions is not sent what it already has; sha256 rather
// than a faster non-cryptographic hash because the bytes come partly from
// untrusted peers, who must not be able to make an update look unchanged.
func contentVersion(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// entryHash is an entry's share of its type's version. The type version is
// the XOR of the shares of all entries, so it changes in O(1) per change and
// still depends only on the content: a restarted agent with the same
// resources reports the same version to state-of-the-world clients.
func entryHash(name, version string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(version))
	return h.Sum64()
}

func typeVersion(x uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], x)
	return hex.EncodeToString(b[:])
}
