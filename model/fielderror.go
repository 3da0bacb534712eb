package model

import "fmt"

// FieldError is an invalid value at a field path such as peers[1].dial or
// ports[0].protocol. Paths are relative to what was checked, so that each
// caller can say where the value came from: a file adds its own path and
// line, an enclosing document its field (Under).
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// FieldErrorf is a *FieldError at path with a formatted message.
func FieldErrorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Under is e at the field prefix of an enclosing document.
func (e *FieldError) Under(prefix string) *FieldError {
	return &FieldError{Path: prefix + "." + e.Path, Msg: e.Msg}
}
