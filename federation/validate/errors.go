package validate

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// invalid is the one way this package fails: the Hamlet spec says a receiver
// answers bad input with InvalidArgument, and the message goes back to the
// peer in the NACK, so it names the field path and the value. It is only
// called on the error path, so formatting costs nothing when input is good.
func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// maxQuoted is how much of a value a message repeats: enough to recognise
// it, not so much that a peer can inflate our logs and NACKs.
const maxQuoted = 64

// quote is %q of v, cut at a rune boundary when v is long, with the full
// length stated so that the reader knows it was cut.
func quote(v string) string {
	if len(v) <= maxQuoted {
		return strconv.Quote(v)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return strconv.Quote(v[:cut]) + "... (" + strconv.Itoa(len(v)) + " bytes)"
}
