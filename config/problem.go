package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong in a configuration file, where it is.
type Problem struct {
	// Line is the line of the field in the file; 0 when it is not written
	// there (a default, or the whole file).
	Line int
	// Field is the path of the field, such as peers[0].dial; empty for the
	// whole file.
	Field string
	Msg   string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is a file that is not a valid configuration: every problem found
// in one pass. Problems of the shape (unknown fields, wrong types) are all
// reported; of the values, the first.
type Error struct {
	// File is the configuration's path; Load sets it, Parse does not.
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.Where(p) + p.Msg
	}
	return strings.Join(lines, "\n")
}

// Where is the "file:line: field: " that a message about p follows, in the
// form compilers use, so that editors jump to it.
func (e *Error) Where(p Problem) string {
	if e.File == "" {
		s := p.String()
		return s[:len(s)-len(p.Msg)]
	}
	var b strings.Builder
	b.WriteString(e.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	return b.String()
}
