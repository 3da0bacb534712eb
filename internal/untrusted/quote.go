package untrusted

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxQuote is how many bytes of a value Quote shows: a DNS label, and most
// host names and SPIFFE IDs whole; a line of a file never whole past it.
const MaxQuote = 64

// Quote is s as a message may repeat it: Go-quoted (control characters and
// invalid UTF-8 escaped, so that nothing reaches a terminal raw), cut at its
// first line break and after MaxQuote bytes, with the length of the whole
// when cut: "inventory", or "inventory.mesh-a.example.with.a.very.lo"... (97 bytes).
// A value that holds a PEM block is not shown at all: it is a certificate
// or a key read by mistake, and the first line of a key's body is secret.
func Quote(s string) string {
	if strings.Contains(s, "-----BEGIN") {
		return "(" + strconv.Itoa(len(s)) + " bytes of PEM, not shown)"
	}
	cut := s
	if i := strings.IndexAny(cut, "\r\n"); i >= 0 {
		cut = cut[:i]
	}
	if len(cut) > MaxQuote {
		cut = cut[:MaxQuote]
	}
	// Not in the middle of a character.
	for len(cut) < len(s) && len(cut) > 0 && !utf8.RuneStart(s[len(cut)]) {
		cut = cut[:len(cut)-1]
	}
	if len(cut) == len(s) {
		return strconv.Quote(s)
	}
	return strconv.Quote(cut) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// MaxMessage is how many bytes of text from elsewhere (a library's error
// about what it read, a server's answer, a name a server gave) are
// repeated in a log or an error.
const MaxMessage = 240

// Message is msg, from a source that may repeat what it read, made safe to
// repeat: cut after MaxMessage bytes, with the length of the whole, and
// control characters and invalid UTF-8 escaped (so an escaped message may
// be a few times longer, never unbounded).
func Message(msg string) string {
	cut := msg
	if len(cut) > MaxMessage {
		cut = cut[:MaxMessage]
		for len(cut) > 0 && !utf8.RuneStart(msg[len(cut)]) {
			cut = cut[:len(cut)-1]
		}
	}
	q := escape(cut)
	if len(cut) == len(msg) {
		return q
	}
	return q + "... (" + strconv.Itoa(len(msg)) + " bytes)"
}

// escape writes what is not printable in s as Go escapes, and leaves the
// rest (quotes included) as it is, so a message still reads as prose.
func escape(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i]) // a byte that is not UTF-8
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

// IsName reports whether s could be the name of a field: a letter, then at
// most 63 letters, digits, '_' and '-'. A key that is not one is shown by
// its length only: in a file that is not the one meant (a password file,
// a key), the first key is the first line.
func IsName(s string) bool {
	if len(s) == 0 || len(s) > 64 || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !('0' <= c && c <= '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// Error is err with its message made safe to repeat, as Message makes it:
// an error that carries what a server answered is as long as the answer.
// It wraps err, for errors.Is and errors.As.
func Error(err error) error {
	if err == nil {
		return nil
	}
	return boundedError{msg: Message(err.Error()), err: err}
}

type boundedError struct {
	msg string
	err error
}

func (e boundedError) Error() string { return e.msg }
func (e boundedError) Unwrap() error { return e.err }
