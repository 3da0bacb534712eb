package snapshot_test

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/snapshottest"
)

var update = flag.Bool("update", false, "rewrite testdata/out from testdata/in through the translator and delete stale golden files")

func importChanges(in *snapshot.Input, del bool, pick func(i int) bool) []snapshot.ImportChange {
	var out []snapshot.ImportChange
	for i, imp := range in.Imports {
		if pick(i) {
			c := snapshot.ImportChange{Key: model.ImportKey(imp), Import: &in.Imports[i]}
			if del {
				c.Import = nil
			}
			out = append(out, c)
		}
	}
	return out
}

func exportChanges(in *snapshot.Input, del bool, pick func(i int) bool) []snapshot.ExportChange {
	var out []snapshot.ExportChange
	for i, exp := range in.Exports {
		if pick(i) {
			c := snapshot.ExportChange{Key: model.ExportKey(exp.Name), Export: &in.Exports[i]}
			if del {
				c.Export = nil
			}
			out = append(out, c)
		}
	}
	return out
}

func all(int) bool { return true }

// step is one Apply of a sequence; retry, when set, adds what the
// Translator asks to translate again for the step's certificates (from
// ofInput), as the runner does.
type step struct {
	snapshot.Changes
	retry   bool
	ofInput *snapshot.Input
}

// sequences are orders in which a catalog can reach the translator; each
// must end in what Build makes of it.
var sequences = map[string]func(in *snapshot.Input) []step{
	"all at once": func(in *snapshot.Input) []step {
		return []step{{Changes: snapshot.Changes{Imports: importChanges(in, false, all), Exports: exportChanges(in, false, all), Secrets: &in.Secrets, Ports: in.EgressPorts}}}
	},
	"one by one, backwards": func(in *snapshot.Input) []step {
		seq := []step{{Changes: snapshot.Changes{Secrets: &in.Secrets}}}
		for i := len(in.Exports) - 1; i >= 0; i-- {
			seq = append(seq, step{Changes: snapshot.Changes{Exports: exportChanges(in, false, func(j int) bool { return j == i })}})
		}
		for i := len(in.Imports) - 1; i >= 0; i-- {
			seq = append(seq, step{Changes: snapshot.Changes{Imports: importChanges(in, false, func(j int) bool { return j == i }), Ports: in.EgressPorts}})
		}
		return seq
	},
	"half deleted and added again": func(in *snapshot.Input) []step {
		odd := func(i int) bool { return i%2 == 1 }
		return []step{
			{Changes: snapshot.Changes{Imports: importChanges(in, false, all), Exports: exportChanges(in, false, all), Secrets: &in.Secrets, Ports: in.EgressPorts}},
			{Changes: snapshot.Changes{Imports: importChanges(in, true, odd), Exports: exportChanges(in, true, odd)}},
			{Changes: snapshot.Changes{Imports: importChanges(in, false, odd), Exports: exportChanges(in, false, odd), Ports: in.EgressPorts}},
		}
	},
	// Every service changes in place: endpoints, ports, protocols, the
	// dedicated ports proposed.
	"updated in place": func(in *snapshot.Input) []step {
		other := mutated(in)
		return []step{
			{Changes: snapshot.Changes{Imports: importChanges(other, false, all), Exports: exportChanges(other, false, all), Secrets: &in.Secrets, Ports: other.EgressPorts}},
			{Changes: snapshot.Changes{Imports: importChanges(in, false, all), Exports: exportChanges(in, false, all), Ports: in.EgressPorts}},
		}
	},
	// The certificates come after the catalog, as at a start whose SVID
	// and bundles are not there yet: every service waits, rejected, and
	// is translated again once they are.
	"certificates last": func(in *snapshot.Input) []step {
		none := snapshot.Secrets{}
		return []step{
			{Changes: snapshot.Changes{Imports: importChanges(in, false, all), Exports: exportChanges(in, false, all), Secrets: &none, Ports: in.EgressPorts}},
			{Changes: snapshot.Changes{Secrets: &in.Secrets, Ports: in.EgressPorts}, retry: true, ofInput: in},
		}
	},
}

// mutated is in with every service changed: other endpoint ports, each
// instance's port moved and its protocol turned, other dedicated ports.
func mutated(in *snapshot.Input) *snapshot.Input {
	out := *in
	out.Imports = slices.Clone(in.Imports)
	for i := range out.Imports {
		svc := &out.Imports[i].Service
		svc.Endpoints = slices.Clone(svc.Endpoints)
		for j := range svc.Endpoints {
			svc.Endpoints[j].Port = svc.Endpoints[j].Port%60000 + 1
		}
		svc.Instances = slices.Clone(svc.Instances)
		for j := range svc.Instances {
			inst := &svc.Instances[j]
			inst.Port += 1
			inst.Protocol = model.Protocols[(slices.Index(model.Protocols, inst.Protocol)+1)%len(model.Protocols)]
		}
	}
	out.EgressPorts = map[string]uint32{}
	for i, k := range snapshot.EgressPortKeys(out.Imports) {
		out.EgressPorts[k] = 30000 + uint32(i)
	}
	out.Exports = slices.Clone(in.Exports)
	for i := range out.Exports {
		ports := slices.Clone(out.Exports[i].Ports)
		for j := range ports {
			ports[j].Endpoints = append(slices.Clone(ports[j].Endpoints), model.LocalEndpoint{Address: "192.0.2.1", Port: 9})
		}
		out.Exports[i].Ports = ports
	}
	return &out
}

// translated is what seq adds up to on a new translator, and the services
// rejected at the end, as Build lists them.
func translated(t testing.TB, in *snapshot.Input, seq []step) *snapshot.Resources {
	t.Helper()
	tr := snapshot.NewTranslator(in.Settings)
	g := snapshot.State{}
	rejected := map[model.Key]error{}
	for _, st := range seq {
		ch := st.Changes
		if st.retry {
			for _, k := range tr.Retry(*ch.Secrets) {
				if k.Kind == model.KindImport {
					ch.Imports = append(ch.Imports, importChanges(st.ofInput, false, func(i int) bool { return model.ImportKey(st.ofInput.Imports[i]) == k })...)
				} else {
					ch.Exports = append(ch.Exports, exportChanges(st.ofInput, false, func(i int) bool { return st.ofInput.Exports[i].Name == k.ID })...)
				}
			}
		}
		res := tr.Apply(ch)
		for _, c := range ch.Imports {
			delete(rejected, c.Key)
		}
		for _, c := range ch.Exports {
			delete(rejected, c.Key)
		}
		for _, r := range res.Rejected {
			rejected[r.Key] = r.Err
		}
		g.Add(res)
	}
	out := g.Resources()
	for _, k := range slices.SortedFunc(maps.Keys(rejected), model.CompareKeys) {
		out.Rejected = append(out.Rejected, snapshot.Rejection{Key: k, Err: rejected[k]})
	}
	return out
}

// rejections lists rs, one per line, in key order.
func rejections(rs []snapshot.Rejection) string {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b snapshot.Rejection) int { return model.CompareKeys(a.Key, b.Key) })
	var b strings.Builder
	for _, r := range rs {
		id := r.Key.ID
		if r.Key.Peer != "" {
			id = r.Key.Peer + "/" + id
		}
		fmt.Fprintf(&b, "%s %s: %v\n", r.Key.Kind, id, r.Err)
	}
	return b.String()
}

// The golden files are written by the production path: the translator,
// in every order a catalog can arrive in, and Build; every one of them
// must give the same files, -update included.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ins), 10)
	want := map[string]bool{}
	for _, path := range ins {
		name := filepath.Base(path)
		want[name] = true
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			in, err := snapshottest.LoadInput(path)
			require.NoError(t, err)
			outputs := map[string]*snapshot.Resources{"Build": snapshot.Build(in)}
			for name, seq := range sequences {
				outputs[name] = translated(t, in, seq(in))
			}
			rendered := map[string]string{}
			for name, res := range outputs {
				require.Empty(t, rejections(res.Rejected), name)
				require.NoError(t, snapshot.Check(res), name)
				got, err := snapshottest.Render(res)
				require.NoError(t, err)
				rendered[name] = string(got)
			}
			out := filepath.Join("testdata/out", name)
			if *update {
				require.NoError(t, os.WriteFile(out, []byte(rendered["Build"]), 0o644))
			}
			golden, err := os.ReadFile(out)
			require.NoError(t, err, "run go test ./snapshot -run TestGolden -update")
			for _, name := range slices.Sorted(maps.Keys(rendered)) {
				require.Equal(t, string(golden), rendered[name], name)
			}
		})
	}
	outs, err := filepath.Glob("testdata/out/*.yaml")
	require.NoError(t, err)
	for _, out := range outs {
		if want[filepath.Base(out)] {
			continue
		}
		if *update {
			require.NoError(t, os.Remove(out))
			continue
		}
		t.Errorf("stale golden file %s: run with -update", out)
	}
}

// Any valid catalog, in any order, ends in what Build makes of it, the
// services rejected included: order picks the sequence, and its high bit
// takes a peer's bundle away, which rejects that peer's imports and the
// exports it consumes.
func FuzzTranslatorMatchesBuild(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add([]byte("meshfed federates service meshes over the Hamlet protocol"), uint8(1))
	f.Add([]byte("a peer's catalog arrives in any order, and half of it goes away"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, order uint8) {
		in := snapshottest.RandomInput(data)
		if order&0x80 != 0 {
			in.Secrets.Bundles = maps.Clone(in.Secrets.Bundles)
			delete(in.Secrets.Bundles, in.Peers[0].TrustDomain)
		}
		want := snapshot.Build(in)
		wantOut, err := snapshottest.Render(want)
		require.NoError(t, err)
		names := slices.Sorted(maps.Keys(sequences))
		name := names[int(order&0x7f)%len(names)]
		got := translated(t, in, sequences[name](in))
		gotOut, err := snapshottest.Render(got)
		require.NoError(t, err)
		require.Equal(t, string(wantOut), string(gotOut), "sequence %q", name)
		require.Equal(t, rejections(want.Rejected), rejections(got.Rejected), "sequence %q", name)
	})
}

// Negative cases: what the checks reject, exactly, and the rest served.
// testdata/bad/NAME.err lists the rejections, one per line.
func TestGoldenRejections(t *testing.T) {
	ins, err := filepath.Glob("testdata/bad/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, ins)
	for _, path := range ins {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			in, err := snapshottest.LoadInput(path)
			require.NoError(t, err)
			res := snapshot.Build(in)
			got := rejections(res.Rejected)
			errPath := strings.TrimSuffix(path, ".yaml") + ".err"
			if *update {
				require.NoError(t, os.WriteFile(errPath, []byte(got), 0o644))
			}
			want, err := os.ReadFile(errPath)
			require.NoError(t, err, "run go test ./snapshot -run TestGolden -update")
			require.Equal(t, string(want), got)
			require.NoError(t, snapshot.Check(res), "what was accepted is served whole")
		})
	}
}
