package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"
)

// pemKeyMarker is in the header of every PEM private key (PRIVATE KEY,
// RSA PRIVATE KEY, EC PRIVATE KEY, ENCRYPTED PRIVATE KEY). Upper case only,
// so that prose such as "no private key in file" is not refused.
var pemKeyMarker = []byte("PRIVATE KEY")

// ErrNotFound, wrapped in an answer's error, makes it a 404: the thing
// asked for (a gateway's node id) is not there.
var ErrNotFound = errors.New("not found")

// ErrInvalid, wrapped in an answer's error, makes it a 422: what was asked
// for cannot be done with the input given (a configuration file that does
// not pass the check).
var ErrInvalid = errors.New("invalid")

// ErrBadRequest, wrapped in an answer's error, makes it a 400: the request
// itself is wrong (a query parameter's value).
var ErrBadRequest = errors.New("bad request")

// errorBody is how every JSON endpoint reports a failure.
type errorBody struct {
	Error string `json:"error"`
}

// api answers with fn's value as JSON, or its error as {"error": ...}.
func (s *Server) api(fn func(context.Context, *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r.Context(), r)
		if err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, ErrNotFound):
				code = http.StatusNotFound
			case errors.Is(err, ErrBadRequest):
				code = http.StatusBadRequest
			case errors.Is(err, ErrInvalid):
				code = http.StatusUnprocessableEntity
			}
			s.writeJSON(w, r, code, errorBody{Error: err.Error()})
			return
		}
		s.writeJSON(w, r, http.StatusOK, v)
	}
}

// writeJSON marshals v indented. It is the last check before an answer
// leaves the agent: whatever a status function returns by mistake, a PEM
// private key is never served.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, code int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		s.log.Error("marshalling an admin answer", zap.String("path", r.URL.Path), zap.Error(err))
		code, body = http.StatusInternalServerError, errorJSON("marshalling the answer: "+err.Error())
	}
	if bytes.Contains(body, pemKeyMarker) {
		s.log.Error("refusing to serve an admin answer that holds private key material", zap.String("path", r.URL.Path))
		code, body = http.StatusInternalServerError, errorJSON("refusing to serve "+r.URL.Path+": the answer holds private key material")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// errorJSON cannot fail: a struct of one string always marshals.
func errorJSON(msg string) []byte {
	b, _ := json.MarshalIndent(errorBody{Error: msg}, "", "  ")
	return b
}
