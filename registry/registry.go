// Package registry connects an agent to the registries of its own mesh: a
// Source yields the local services to export, a Sink publishes the imported
// ones where local workloads look services up. Subpackages hold the
// adapters (file, consul); this package holds what they share.
package registry

import (
	"context"
	"strings"

	"github.com/meshfed/meshfed/model"
)

// Source yields the complete set of local services to export, every time it
// changes.
type Source interface {
	// Run calls update with the full current set (sorted by Name) at start
	// and after every change, until ctx is done. A source that cannot read
	// its first state returns the error; later failures are logged and the
	// last good set stays. Run returns nil once ctx is done, and never calls
	// update after it has returned.
	Run(ctx context.Context, update func([]model.Export)) error
}

// Imported is one imported service instance as local workloads reach it
// through the egress gateway.
type Imported struct {
	Peer      string         `json:"peer"`      // peer name
	Name      string         `json:"name"`      // the owner's service name
	FQDN      string         `json:"fqdn"`      // owner's fqdn
	LocalFQDN string         `json:"localFqdn"` // name in this mesh (alias or fqdn)
	Instance  string         `json:"instance"`  // instance id
	Protocol  model.Protocol `json:"protocol"`
	Address   string         `json:"address"` // egress gateway address local workloads dial
	// Port is the egress port: the instance's dedicated listener port
	// (TCP-like protocols) or the shared HTTP listener port.
	Port uint32 `json:"port"`
}

// ImportName is the name a registry gives an import: template with
// {name} (the owner's service name) and {peer} replaced, lower-cased. It
// is a name only when IsLabel holds for it.
func ImportName(template, name, peer string) string {
	return strings.ToLower(strings.NewReplacer("{name}", name, "{peer}", peer).Replace(template))
}

// Sink mirrors the imports into another registry.
type Sink interface {
	// Sync makes the registry hold exactly imports: each call gets the
	// complete desired set, so a call is idempotent and also repairs what
	// was lost or left over.
	Sync(ctx context.Context, imports []Imported) error
}

// ChangeSink is a Sink that also takes one change at a time: the imports
// set (new or changed) and those gone, as last given. An Apply costs what
// it changes, where a Sync costs the whole set; Sync stays the repair, at
// start, after a failure and every anti-entropy interval. An Apply that
// fails leaves the registry to the next Sync.
type ChangeSink interface {
	Sink
	Apply(ctx context.Context, set, gone []Imported) error
}

// SourceStatus is how a source's reading goes: what a status page shows,
// and what tests check instead of log lines.
type SourceStatus struct {
	// Err is the problem that keeps the last good set, nil while the
	// source reads well.
	Err error
	// Skipped are the services left out of the set, with why.
	Skipped map[string]string
	// Reads counts the reads after the first; Reported the problems
	// reported, each once however often it is met again.
	Reads, Reported int
}
