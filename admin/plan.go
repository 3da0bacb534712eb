package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// PlanRequest is the body of POST /api/v1/plan: what to plan. Both paths
// are absolute; empty ones are the agent's own files.
type PlanRequest struct {
	// Config is a configuration file to plan instead of the agent's own.
	Config string `json:"config,omitempty"`
	// Registry is a registry file to read instead of the one the
	// configuration names in exports.file.
	Registry string `json:"registry,omitempty"`
}

// plan serves POST /api/v1/plan. It changes nothing, but it reads files
// with the agent's rights and answers with what it found in them, so it
// is guarded as a reload is.
func (s *Server) plan(fn func(context.Context, PlanRequest) (any, error)) http.Handler {
	return changesState(s.api(func(ctx context.Context, r *http.Request) (any, error) {
		var req PlanRequest
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, fmt.Errorf("reading the request body: %v: %w", err, ErrBadRequest)
		}
		if len(bytes.TrimSpace(body)) > 0 {
			d := json.NewDecoder(bytes.NewReader(body))
			d.DisallowUnknownFields()
			if err := d.Decode(&req); err != nil {
				return nil, fmt.Errorf("the request body is not a plan request ({\"config\": PATH, \"registry\": PATH}): %v: %w", err, ErrBadRequest)
			}
		}
		return fn(ctx, req)
	}))
}
