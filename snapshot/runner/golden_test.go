package runner

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/snapshot"
	"github.com/meshfed/meshfed/snapshot/snapshottest"
)

var update = flag.Bool("update", false, "rewrite ../testdata/out from ../testdata/in through the translator and delete stale golden files")

// gateways is what the translator's results add up to: the resources of
// each role, by type and name, as the cache holds them.
type gateways map[model.Role]map[string]map[string]proto.Message

func (g gateways) apply(t testing.TB, res Result) {
	t.Helper()
	require.Empty(t, res.Rejected)
	for role, changes := range res.Changes {
		for _, c := range changes {
			if g[role] == nil {
				g[role] = map[string]map[string]proto.Message{}
			}
			if g[role][c.TypeURL] == nil {
				g[role][c.TypeURL] = map[string]proto.Message{}
			}
			if c.Resource == nil {
				delete(g[role][c.TypeURL], c.Name)
			} else {
				g[role][c.TypeURL][c.Name] = c.Resource
			}
		}
	}
}

// resources are the gateways as snapshot.Build returns them: every type
// of every role, sorted by name.
func (g gateways) resources() *snapshot.Resources {
	out := &snapshot.Resources{ByRole: map[model.Role]map[resource.Type][]types.Resource{}}
	for _, role := range model.GatewayRoles {
		byType := map[resource.Type][]types.Resource{}
		for _, typ := range snapshot.Types {
			list := []types.Resource{}
			byName := g[role][typ]
			for _, n := range sortedKeys(byName) {
				list = append(list, byName[n])
			}
			byType[typ] = list
		}
		out.ByRole[role] = byType
	}
	return out
}

func keyOf(imp model.Import) model.Key {
	return model.Key{Kind: model.KindImport, Peer: imp.Peer, ID: imp.ResourceID}
}

func imports(in *snapshot.Input, del bool, pick func(i int) bool) []ImportChange {
	var out []ImportChange
	for i, imp := range in.Imports {
		if pick(i) {
			c := ImportChange{Key: keyOf(imp), Import: &in.Imports[i]}
			if del {
				c.Import = nil
			}
			out = append(out, c)
		}
	}
	return out
}

func exports(in *snapshot.Input, del bool, pick func(i int) bool) []ExportChange {
	var out []ExportChange
	for i, exp := range in.Exports {
		if pick(i) {
			c := ExportChange{Name: exp.Name, Export: &in.Exports[i]}
			if del {
				c.Export = nil
			}
			out = append(out, c)
		}
	}
	return out
}

func all(int) bool { return true }

// sequences are orders in which a catalog can reach the translator; each
// must end in the same gateways.
var sequences = map[string]func(in *snapshot.Input) []Changes{
	"all at once": func(in *snapshot.Input) []Changes {
		return []Changes{{Imports: imports(in, false, all), Exports: exports(in, false, all), Secrets: &in.Secrets, Ports: in.EgressPorts}}
	},
	"one by one, backwards": func(in *snapshot.Input) []Changes {
		seq := []Changes{{Secrets: &in.Secrets}}
		for i := len(in.Exports) - 1; i >= 0; i-- {
			seq = append(seq, Changes{Exports: exports(in, false, func(j int) bool { return j == i })})
		}
		for i := len(in.Imports) - 1; i >= 0; i-- {
			seq = append(seq, Changes{Imports: imports(in, false, func(j int) bool { return j == i }), Ports: in.EgressPorts})
		}
		return seq
	},
	"half deleted and added again": func(in *snapshot.Input) []Changes {
		odd := func(i int) bool { return i%2 == 1 }
		return []Changes{
			{Imports: imports(in, false, all), Exports: exports(in, false, all), Secrets: &in.Secrets, Ports: in.EgressPorts},
			{Imports: imports(in, true, odd), Exports: exports(in, true, odd)},
			{Imports: imports(in, false, odd), Exports: exports(in, false, odd), Ports: in.EgressPorts},
		}
	},
}

// translate runs seq through a new translator.
func translate(t testing.TB, in *snapshot.Input, seq []Changes) *snapshot.Resources {
	t.Helper()
	tr := NewTranslator(*in)
	g := gateways{}
	for _, ch := range seq {
		g.apply(t, tr.Apply(ch))
	}
	return g.resources()
}

// The golden files are written by the production path: the incremental
// translator, in every order a catalog can arrive in. snapshot.Build, the
// reference translation, is checked against the same files.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("../testdata/in/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ins), 10)
	want := map[string]bool{}
	for _, path := range ins {
		name := filepath.Base(path)
		want[name] = true
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			in, err := snapshottest.LoadInput(path)
			require.NoError(t, err)
			out := filepath.Join("../testdata/out", name)
			for _, seqName := range sortedKeys(sequences) {
				res := translate(t, in, sequences[seqName](in))
				require.NoError(t, snapshot.Check(res), seqName)
				got, err := snapshottest.Render(res)
				require.NoError(t, err)
				if *update {
					require.NoError(t, os.WriteFile(out, got, 0o644))
					continue
				}
				golden, err := os.ReadFile(out)
				require.NoError(t, err, "run go test ./snapshot/runner -run TestGolden -update")
				require.Equal(t, string(golden), string(got), seqName)
			}
		})
	}
	outs, err := filepath.Glob("../testdata/out/*.yaml")
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

// Any valid catalog, in any order, ends in what snapshot.Build makes of
// it.
func FuzzTranslatorMatchesBuild(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add([]byte("meshfed federates service meshes over the Hamlet protocol"), uint8(1))
	f.Add([]byte("a peer's catalog arrives in any order, and half of it goes away"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, order uint8) {
		in := snapshottest.RandomInput(data)
		want, err := snapshottest.Render(snapshot.Build(in))
		require.NoError(t, err)
		names := sortedKeys(sequences)
		name := names[int(order)%len(names)]
		got, err := snapshottest.Render(translate(t, in, sequences[name](in)))
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), fmt.Sprintf("sequence %q", name))
	})
}

// Negative cases: what the checks reject, exactly, and the rest served.
// testdata/bad/NAME.err lists the rejections, one per line.
func TestGoldenRejections(t *testing.T) {
	ins, err := filepath.Glob("../testdata/bad/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, ins)
	for _, path := range ins {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			in, err := snapshottest.LoadInput(path)
			require.NoError(t, err)
			res := NewTranslator(*in).Apply(sequences["all at once"](in)[0])
			var lines []string
			for _, r := range res.Rejected {
				id := r.Key.ID
				if r.Key.Peer != "" {
					id = r.Key.Peer + "/" + id
				}
				lines = append(lines, fmt.Sprintf("%s %s: %v", r.Key.Kind.String(), id, r.Err))
			}
			got := strings.Join(lines, "\n") + "\n"
			errPath := strings.TrimSuffix(path, ".yaml") + ".err"
			if *update {
				require.NoError(t, os.WriteFile(errPath, []byte(got), 0o644))
				return
			}
			want, err := os.ReadFile(errPath)
			require.NoError(t, err, "run go test ./snapshot/runner -run TestGolden -update")
			require.Equal(t, string(want), got)

			g := gateways{}
			res.Rejected = nil
			g.apply(t, res)
			require.NoError(t, snapshot.Check(g.resources()), "what was accepted is served whole")
		})
	}
}
