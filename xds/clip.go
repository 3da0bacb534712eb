package xds

import (
	"fmt"
	"unicode/utf8"
)

// maxClientText bounds what a text a client chose (a NACK's message, a
// node id) takes in a log line, the status API or an error: a request may
// be megabytes.
const maxClientText = 1 << 10

// clip cuts s to at most maxClientText bytes on a UTF-8 boundary, ending
// with a marker that says it was cut and from how many bytes.
func clip(s string) string {
	if len(s) <= maxClientText {
		return s
	}
	marker := fmt.Sprintf("… [cut from %d bytes]", len(s))
	keep := maxClientText - len(marker)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	// The concatenation is a copy: what is kept does not hold on to s.
	return s[:keep] + marker
}
