package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
)

// secretLine is what a file that the registry file must never show holds.
const secretLine = "root:$6$recognisable.secret.salt$recognisable.secret.hash:19000:0:99999:7:::"

// observed runs a Source on path with a logger that keeps every entry.
func observed(t *testing.T, path string) (*running, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	r := &running{t: t, path: path, updates: make(chan []model.Export, 16), src: New(path, 0, zap.New(core))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.src.Run(ctx, func(s []model.Export) { r.updates <- s }) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return r, logs
}

// requireNotLogged checks that no entry, message or field, holds s.
func requireNotLogged(t *testing.T, logs *observer.ObservedLogs, s string) {
	t.Helper()
	require.NotZero(t, logs.Len(), "something was logged")
	for _, e := range logs.All() {
		require.NotContains(t, e.Message, s)
		for k, v := range e.ContextMap() {
			require.NotContains(t, k, s)
			require.NotContains(t, fmt.Sprint(v), s)
		}
	}
}

// The registry file replaced by a link to a secret file elsewhere: the
// link is refused before the file is read, and neither the status nor
// the log holds a byte of it; the last good set stays.
func TestSourceRefusesALinkToAFileElsewhere(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "shadow")
	require.NoError(t, os.WriteFile(secret, []byte(secretLine+"\n"), 0o600))
	dir := t.TempDir()
	path := filepath.Join(dir, "services.yaml")
	write(t, path, base)
	r, logs := observed(t, path)
	require.Equal(t, uint32(9080), endpointPort(t, r.next()))

	link := filepath.Join(dir, "services.yaml.new")
	require.NoError(t, os.Symlink(secret, link))
	require.NoError(t, os.Rename(link, path))
	err := r.failing()
	require.ErrorIs(t, err, untrusted.ErrLinkLeaves)
	require.EqualError(t, err, "registry file: "+path+" leads to "+secret+", outside its folder "+dir+
		": a symbolic link out of the file's folder; a link may lead only within the folder (as a Kubernetes ConfigMap's ..data does), or link the folder itself")
	r.noUpdate()
	require.Equal(t, 1, logs.FilterMessage("registry file not reloaded; the last good set stays").Len())
	requireNotLogged(t, logs, "recognisable")

	// At start too.
	_, err = Read(path, 0)
	require.ErrorIs(t, err, untrusted.ErrLinkLeaves)
	require.NotContains(t, err.Error(), "recognisable")
}

// Files that are not registry files, in the registry file's folder or
// through a link: each is refused with a message that holds none of
// their content.
func TestReadRefusesWhatIsNotARegistryFile(t *testing.T) {
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	require.NoError(t, syscall.Mkfifo(at("fifo.yaml"), 0o600))
	require.NoError(t, os.Symlink("/dev/zero", at("zero.yaml")))
	write(t, at("shadow"), secretLine+"\n")
	write(t, at("key.pem"), "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKrecognisablesecretkeymaterialAAAAAAAAAAAAAAAAAAAAoAoGCCqGSM49\nAwEHoUQDQgAE\n-----END EC PRIVATE KEY-----\n")
	big := base + strings.Repeat("# padding\n", 1000)
	write(t, at("big.yaml"), big)
	write(t, at("mapping-secret.yaml"), "services:\n  - name: '"+secretLine+"'\n")
	for _, tc := range []struct {
		name, want string
		max        int64
	}{
		{"fifo.yaml", at("fifo.yaml") + " is a named pipe, not a regular file", 0},
		{"zero.yaml", at("zero.yaml") + " leads to /dev/zero, outside its folder " + dir, 0},
		{"big.yaml", fmt.Sprintf("%s is %d bytes, over the size limit of %d bytes (exports.maxFileBytes); it is not read", at("big.yaml"), len(big), len(big)-1), int64(len(big) - 1)},
		// The lines of a password file end in ':', which makes each a key.
		{"shadow", at("shadow") + ":1: (a key of 75 bytes): unknown field; known: services", 0},
		{"key.pem", at("key.pem") + ":1: the document: got a single value of 144 bytes, want a mapping with services; is this a registry file?", 0},
		{"mapping-secret.yaml", at("mapping-secret.yaml") + `:2: services[0].name: "root:$6$recognisable.secret.salt$recognisable.secret.hash:19000:"... (76 bytes) is not a DNS label`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(at(tc.name), tc.max)
			require.ErrorContains(t, err, tc.want)
			if tc.name != "mapping-secret.yaml" {
				require.NotContains(t, err.Error(), "recognisable")
			}
			require.NotContains(t, err.Error(), "PRIVATE KEY")
			require.Less(t, len(err.Error()), 400)
		})
	}
}

// laughs is a "billion laughs" in a registry file's shape: n levels of
// lists of tags, each repeating the level below nine times.
func laughs(n int) string {
	var b strings.Builder
	b.WriteString("services:\n  - name: inventory\n    labels:\n      a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "      a%d: &a%d [%s*a%d]\n", i, i, strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 8), i-1)
	}
	return b.String()
}

func TestReadRefusesAnAliasBomb(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	bomb := laughs(9) // 9^9: 387 million values
	write(t, path, bomb)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Read(path, 0)
	runtime.ReadMemStats(&after)
	require.EqualError(t, err, path+":9: too many YAML aliases: they would add more than 250000 values to the document (an alias of an alias multiplies them); repeat the values instead")
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "bytes allocated refusing %d bytes", len(bomb))
}

// The report's 36 MB registry file took 2.8 GB before its error: it is
// now refused by its size, before a byte is read.
func TestReadRefusesALargeFileBeforeReadingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(36_000_000))
	require.NoError(t, f.Close())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = Read(path, 0)
	runtime.ReadMemStats(&after)
	require.EqualError(t, err, "registry file: "+path+" is 36000000 bytes, over the size limit of 16777216 bytes (exports.maxFileBytes); it is not read")
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10))
}
