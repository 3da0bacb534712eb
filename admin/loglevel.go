package admin

import (
	"encoding/json"
	"fmt"
	"net/http"

	"go.uber.org/zap"
)

// logLevel is the body of GET and PUT /api/v1/loglevel.
type logLevel struct {
	Level string `json:"level"`
}

// levelHandler reads and sets level. It answers a bad request with the
// value quoted and cut short, never with the body the client sent.
func (s *Server) levelHandler(level *zap.AtomicLevel) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			var in logLevel
			dec := json.NewDecoder(r.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				s.writeJSON(w, r, http.StatusBadRequest, errorBody{Error: "the body is not {\"level\": \"debug|info|warn|error\"}: " + shortErr(err)})
				return
			}
			var l zap.AtomicLevel
			if err := l.UnmarshalText([]byte(in.Level)); err != nil {
				s.writeJSON(w, r, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("level: %s is not debug, info, warn, error, dpanic, panic or fatal", quote(in.Level))})
				return
			}
			level.SetLevel(l.Level())
			s.log.Info("log level changed", zap.Stringer("level", l.Level()))
		}
		s.writeJSON(w, r, http.StatusOK, logLevel{Level: level.Level().String()})
	}
}

// shortErr is err's text cut short: a decoding error may quote the input.
func shortErr(err error) string {
	msg := err.Error()
	if len(msg) > 128 {
		msg = msg[:128] + "..."
	}
	return msg
}
