// Package preflight finds, without starting anything, what would stop an
// agent from starting or make it run wrongly: the configuration, the files
// it names (certificates, keys, bundles, the registry file, the store) and
// how its parts fit together. `meshfed check` prints every finding;
// `meshfed run` refuses to start on an error, so that what check passes is
// what run accepts.
package preflight

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/internal/untrusted"
)

// Severity says whether a finding stops the agent.
type Severity string

const (
	// Error is what run refuses to start with.
	Error Severity = "error"
	// Warning is what run accepts but is most likely wrong, or will be
	// soon (a certificate about to expire).
	Warning Severity = "warning"
)

// Finding is one thing found, where it is.
type Finding struct {
	Severity Severity
	// File is the configuration file the finding is about.
	File string
	// Line of Field in File; 0 when the field is not written there.
	Line int
	// Field is the configuration field, such as identity.egress.key;
	// empty for the whole file.
	Field string
	Msg   string
	// Expiry marks a certificate that expires within the warning window:
	// a running agent warns of those itself, at start and then hourly.
	Expiry bool
}

// String is "file:line: severity: field: message", as compilers write,
// so that editors jump to the line.
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.File)
	if f.Line > 0 {
		fmt.Fprintf(&b, ":%d", f.Line)
	}
	fmt.Fprintf(&b, ": %s: ", f.Severity)
	if f.Field != "" {
		b.WriteString(f.Field + ": ")
	}
	b.WriteString(f.Msg)
	return b.String()
}

// Options tune Check.
type Options struct {
	// Now is when certificates are judged; zero is time.Now().
	Now time.Time
	// SkipStore leaves the store alone: run opens it itself, and
	// opening it here too would only wait for its own lock.
	SkipStore bool
}

// Report is what Check found.
type Report struct {
	// Config is the configuration; nil when the file is not one.
	Config   *config.Config
	Findings []Finding
	path     string
	doc      *yaml.Node
}

// Errors lists the findings of severity Error.
func (r *Report) Errors() []Finding { return r.of(Error) }

// Warnings lists the findings of severity Warning.
func (r *Report) Warnings() []Finding { return r.of(Warning) }

func (r *Report) of(s Severity) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity == s {
			out = append(out, f)
		}
	}
	return out
}

// Err is nil without errors, else an error that lists them, one a line.
func (r *Report) Err() error {
	errs := r.Errors()
	if len(errs) == 0 {
		return nil
	}
	lines := make([]string, len(errs))
	for i, f := range errs {
		lines[i] = f.String()
	}
	return errors.New(strings.Join(lines, "\n"))
}

// add records a finding about field, on the line the field is written.
func (r *Report) add(sev Severity, field, format string, args ...any) {
	line := 0
	if r.doc != nil && field != "" {
		line = config.LineOf(r.doc, field)
	}
	r.Findings = append(r.Findings, Finding{Severity: sev, File: r.path, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Check loads the configuration at path and checks everything it names.
// When the file is not a valid configuration, its problems are the only
// findings.
func Check(path string, opts Options) *Report {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	r := &Report{path: path}
	// Read once: what is checked is what was read.
	b, err := config.ReadFile(path)
	if err != nil {
		r.add(Error, "", "%v", err)
		return r
	}
	cfg, err := config.ParseFile(b, path)
	if err != nil {
		var ce *config.Error
		if !errors.As(err, &ce) {
			r.add(Error, "", "%v", err)
			return r
		}
		for _, p := range ce.Problems {
			// A problem of a peer file (federation.peersDir) names it.
			r.Findings = append(r.Findings, Finding{Severity: Error, File: cmp.Or(ce.File, path), Line: p.Line, Field: p.Field, Msg: p.Msg})
		}
		return r
	}
	r.Config = cfg
	if doc, err := untrusted.ParseYAML(b); err == nil {
		r.doc = doc
	}
	r.identity(opts.Now)
	r.bundles(opts.Now)
	r.listeners()
	r.federation()
	r.exports()
	r.consul()
	if !opts.SkipStore {
		r.store()
	}
	// In the file's order, as an editor lists them; what has no line
	// (defaults, the store) last.
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		return cmp.Compare(lineOrLast(a.Line), lineOrLast(b.Line))
	})
	return r
}

func lineOrLast(line int) int {
	if line == 0 {
		return math.MaxInt
	}
	return line
}
