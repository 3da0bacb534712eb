package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// laughs is a configuration of 1.6 KB holding a "billion laughs": 9
// levels of lists each repeating the level below 9 times.
func laughs() string {
	var b strings.Builder
	b.WriteString("trustDomain: mesh-a.example\nlaughs:\n  l0: &l0 [" + strings.Repeat(`"`+strings.Repeat("lol ", 26)+`", `, 8) + `"lol"]` + "\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "  l%d: &l%d [%s*l%d]\n", i, i, strings.Repeat(fmt.Sprintf("*l%d,    ", i-1), 8), i-1)
	}
	return b.String()
}

// meshfed check refuses the alias bomb of the report, which took it to
// 2.5 GB, having allocated a few hundred KB at most.
func TestCheckRefusesAnAliasBomb(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshfed.yaml")
	bomb := laughs()
	require.NoError(t, os.WriteFile(path, []byte(bomb), 0o600))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	code, out := checkCommand(t, "check", "--config", path)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	require.Equal(t, 1, code)
	require.Equal(t, path+":8: error: too many YAML aliases: they would add more than 250000 values to the document (an alias of an alias multiplies them); repeat the values instead\n"+
		path+": 1 error, 0 warnings\n", out)
	alloc := after.TotalAlloc - before.TotalAlloc
	require.Less(t, alloc, uint64(100<<20))
	t.Logf("meshfed check refused a %d-byte alias bomb having allocated %d bytes, in %s", len(bomb), alloc, took)
}
