package consul

import (
	"maps"
	"reflect"
	"slices"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
)

// outcome is what one service gives the set: its export (none when Name
// is empty), and why it, or some of its instances, was left out.
type outcome struct {
	export  model.Export
	problem string
}

// build makes the set again from the services read since the last build,
// and says whether it changed: a change of one service among thousands
// builds that one.
func (r *sourceRun) build() ([]model.Export, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := r.src.cfg.OnEmpty == OnEmptyKeep
	changed := !r.built
	skipped := map[string]string{}
	for name := range r.stale {
		e, ok, problem := r.src.export(name, r.services[name])
		old := r.outcomes[name]
		// Logged when it changes, not at every build.
		if problem != "" && problem != old.problem {
			r.src.log.Warn("consul service not exported as it stands", zap.String("service", untrusted.Message(name)), zap.String("problem", problem))
		}
		o := outcome{problem: problem}
		switch {
		case ok:
			if keep {
				r.kept[name] = e
			}
			o.export = e
		case keep && r.kept[name].Name != "":
			// Even gone from the catalog, a kept service stays.
			o.export = r.kept[name]
		}
		if o.export.Name == "" && o.problem == "" {
			delete(r.outcomes, name)
		} else {
			r.outcomes[name] = o
		}
		changed = changed || !reflect.DeepEqual(old.export, o.export)
		if old.problem != o.problem {
			skipped[name] = o.problem
		}
	}
	clear(r.stale)
	r.src.built(!r.built, skipped)
	r.built = true
	if !changed {
		return nil, false
	}
	out := []model.Export{}
	for _, name := range slices.Sorted(maps.Keys(r.outcomes)) {
		if e := r.outcomes[name].export; e.Name != "" {
			out = append(out, e)
		}
	}
	return out, true
}
