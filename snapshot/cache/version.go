package cache

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// contentVersion names the content of a resource: its whole sha256. It must
// be equal across processes, so that an Envoy reconnecting to a restarted
// agent with its initial_resource_versions is not sent what it already has,
// and unforgeable, because the bytes come partly from untrusted peers, who
// must not be able to make an update look unchanged. Base64 keeps the 256
// bits in 43 bytes.
func contentVersion(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// typeContentVersion is the version_info of a state-of-the-world response
// holding every resource of a type: a sha256 over its (name, version)
// pairs in name order. A restarted agent with the same resources reports
// the same version; nobody can choose resources whose versions cancel out.
func typeContentVersion(names []string, entries func(string) string) string {
	h := sha256.New()
	var n [8]byte
	for _, name := range names {
		for _, field := range []string{name, entries(name)} {
			// Length-prefixed, so that no two pair lists hash alike.
			h.Write(strconv.AppendUint(n[:0], uint64(len(field)), 10))
			h.Write([]byte{':'})
			h.Write([]byte(field))
		}
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// changeVersion is the system_version_info of a delta response: the
// sequence number of the type's last change in this process (epoch), which
// costs nothing to know. Delta clients compare resources by their own
// versions; this one only tells responses apart in status and metrics.
func changeVersion(epoch string, seq uint64) string {
	return epoch + strconv.FormatUint(seq, 10)
}
