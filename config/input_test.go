package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshfed/meshfed/internal/untrusted"
)

func TestMaxFileBytesDefaultAndBounds(t *testing.T) {
	c, err := Parse([]byte(valid), "/etc/meshfed")
	require.NoError(t, err)
	require.Equal(t, int64(16<<20), c.Exports.MaxFileBytes)
	for _, n := range []int64{1024, 256 << 20} {
		c, err := Parse([]byte(strings.Replace(valid, "  file: services.yaml", fmt.Sprintf("  file: services.yaml\n  maxFileBytes: %d", n), 1)), "/etc/meshfed")
		require.NoError(t, err)
		require.Equal(t, n, c.Exports.MaxFileBytes)
	}
	for _, n := range []int64{-1, 1023, 256<<20 + 1} {
		_, err := Parse([]byte(strings.Replace(valid, "  file: services.yaml", fmt.Sprintf("  file: services.yaml\n  maxFileBytes: %d", n), 1)), "/etc/meshfed")
		require.EqualError(t, err, fmt.Sprintf("line 34: exports.maxFileBytes: %d is out of range 1024-268435456 (1 KiB to 256 MiB)", n))
	}
}

// bomb is a configuration that holds a "billion laughs": 9 levels of
// lists each repeating the level below 9 times, 9^9 = 387 million values
// written in 1.6 KB.
func bomb() string {
	var b strings.Builder
	b.WriteString("trustDomain: mesh-a.example\nlaughs:\n  l0: &l0 [" + strings.Repeat(`"`+strings.Repeat("lol ", 26)+`", `, 8) + `"lol"]` + "\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "  l%d: &l%d [%s*l%d]\n", i, i, strings.Repeat(fmt.Sprintf("*l%d,    ", i-1), 8), i-1)
	}
	return b.String()
}

// meshfed check, run, a reload and SIGHUP all load the configuration
// with Load: a billion laughs is refused before anything expands it.
func TestLoadRefusesAnAliasBomb(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshfed.yaml")
	in := bomb()
	require.NoError(t, os.WriteFile(path, []byte(in), 0o600))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Load(path)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	require.EqualError(t, err, path+":8: too many YAML aliases: they would add more than 250000 values to the document (an alias of an alias multiplies them); repeat the values instead")
	alloc := after.TotalAlloc - before.TotalAlloc
	require.Less(t, alloc, uint64(100<<20))
	t.Logf("a %d-byte alias bomb refused having allocated %d bytes in %s", len(in), alloc, took)
}

// A configuration that is not what it claims to be is refused before it
// is parsed, and its content is never repeated.
func TestLoadRefusesWhatIsNotAConfigurationFile(t *testing.T) {
	secrets := t.TempDir()
	shadow := filepath.Join(secrets, "shadow")
	const secretLine = "root:$6$recognisable.secret.salt$recognisable.secret.hash:19000:0:99999:7:::"
	require.NoError(t, os.WriteFile(shadow, []byte(secretLine+"\n"), 0o600))
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	require.NoError(t, os.Symlink(shadow, at("linked.yaml")))
	require.NoError(t, os.WriteFile(at("copied.yaml"), []byte(secretLine+"\n"), 0o600))
	require.NoError(t, syscall.Mkfifo(at("fifo.yaml"), 0o600))
	require.NoError(t, os.WriteFile(at("big.yaml"), make([]byte, DefaultMaxFileBytes+1), 0o600))
	for _, tc := range []struct{ name, want string }{
		{"linked.yaml", at("linked.yaml") + " leads to " + shadow + ", outside its folder " + dir + ": a symbolic link out of the file's folder"},
		// The lines of a password file end in ':', which makes each a key.
		{"copied.yaml", at("copied.yaml") + ":1: a key of 75 bytes is no field"},
		{"fifo.yaml", at("fifo.yaml") + " is a named pipe, not a regular file"},
		{"big.yaml", at("big.yaml") + " is 16777217 bytes, over the size limit of 16777216 bytes (the bound of a configuration file); it is not read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(at(tc.name))
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "recognisable")
		})
	}
	_, err := Load(at("linked.yaml"))
	require.ErrorIs(t, err, untrusted.ErrLinkLeaves)
}

// A value is quoted in a message by a short excerpt of its first line.
func TestMessagesQuoteAnExcerpt(t *testing.T) {
	long := strings.Repeat("x", 5000)
	_, err := Parse([]byte(strings.Replace(valid, "    dial: 127.0.0.1:16443", "    dial: \""+long+"\"", 1)), "/etc/meshfed")
	require.ErrorContains(t, err, `line 23: peers[0].dial: "`+strings.Repeat("x", untrusted.MaxQuote)+`"... (5000 bytes): `)
	require.Less(t, len(err.Error()), 500)
}
