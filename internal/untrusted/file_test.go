package untrusted

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

func TestReadRegularFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "services.yaml")
	write(t, path, "services: []\n")
	b, err := File{}.Read(path)
	require.NoError(t, err)
	require.Equal(t, "services: []\n", string(b))

	// Relative to the working directory, as a configuration given on the
	// command line is.
	t.Chdir(dir)
	b, err = File{}.Read("services.yaml")
	require.NoError(t, err)
	require.Equal(t, "services: []\n", string(b))
}

func TestReadRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	// A pipe nobody writes to: opening it must not wait for a writer.
	_, err := File{}.Read(fifo)
	require.ErrorIs(t, err, ErrNotRegular)
	require.EqualError(t, err, fifo+" is a named pipe, not a regular file")

	_, err = File{}.Read(dir)
	require.EqualError(t, err, dir+" is a directory, not a regular file")

	// A link (inside the folder) to a device is no better.
	dev := filepath.Join(dir, "zero.yaml")
	require.NoError(t, os.Symlink("/dev/zero", dev))
	_, err = File{AnyLink: true}.Read(dev)
	require.EqualError(t, err, dev+" is a character device, not a regular file")
}

func TestReadRefusesALargerFileBeforeReadingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	write(t, path, strings.Repeat("#", 1025))
	_, err := File{MaxBytes: 1024, Limit: "exports.maxFileBytes"}.Read(path)
	require.ErrorIs(t, err, ErrTooLarge)
	require.EqualError(t, err, path+" is 1025 bytes, over the size limit of 1024 bytes (exports.maxFileBytes); it is not read")
	b, err := File{MaxBytes: 1025}.Read(path)
	require.NoError(t, err)
	require.Len(t, b, 1025)

	// A file that says it is empty but is not (as /proc's do) is cut off
	// at the limit all the same.
	_, err = File{MaxBytes: 16, AnyLink: true}.Read("/proc/self/status")
	require.EqualError(t, err, "/proc/self/status is more than that, over the size limit of 16 bytes; it is not read")
}

// A Kubernetes ConfigMap volume: name → ..data/name, ..data → ..2024_01_01.
// Links that stay inside the folder are followed.
func TestReadFollowsLinksInsideTheFolder(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "..2024_01_01"), 0o700))
	write(t, filepath.Join(dir, "..2024_01_01", "services.yaml"), "services: []\n")
	require.NoError(t, os.Symlink("..2024_01_01", filepath.Join(dir, "..data")))
	require.NoError(t, os.Symlink("..data/services.yaml", filepath.Join(dir, "services.yaml")))
	b, err := File{}.Read(filepath.Join(dir, "services.yaml"))
	require.NoError(t, err)
	require.Equal(t, "services: []\n", string(b))

	// A linked folder is the folder: links inside it are judged from
	// where it leads.
	link := filepath.Join(t.TempDir(), "config")
	require.NoError(t, os.Symlink(dir, link))
	_, err = File{}.Read(filepath.Join(link, "services.yaml"))
	require.NoError(t, err)
}

func TestReadRefusesALinkOutOfTheFolder(t *testing.T) {
	secrets := t.TempDir()
	shadow := filepath.Join(secrets, "shadow")
	write(t, shadow, "root:$6$recognisable-secret-line:19000:0:99999:7:::\n")
	dir := t.TempDir()
	for name, target := range map[string]string{
		"absolute.yaml": shadow,
		"relative.yaml": filepath.Join("..", filepath.Base(secrets), "shadow"),
	} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.Symlink(target, path))
		b, err := File{}.Read(path)
		require.ErrorIs(t, err, ErrLinkLeaves)
		require.EqualError(t, err, path+" leads to "+shadow+", outside its folder "+dir+": a symbolic link out of the file's folder; "+
			"a link may lead only within the folder (as a Kubernetes ConfigMap's ..data does), or link the folder itself")
		require.Nil(t, b)
	}
	// Through a link inside the folder that leads to one that leaves.
	require.NoError(t, os.Symlink("absolute.yaml", filepath.Join(dir, "chained.yaml")))
	_, err := File{}.Read(filepath.Join(dir, "chained.yaml"))
	require.ErrorIs(t, err, ErrLinkLeaves)

	// Certificates may be links to a mounted secret elsewhere.
	b, err := File{AnyLink: true}.Read(filepath.Join(dir, "absolute.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(b), "recognisable-secret-line")
}

func TestReadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	for _, o := range []File{{}, {AnyLink: true}} {
		_, err := o.Read(path)
		require.ErrorIs(t, err, os.ErrNotExist)
		require.EqualError(t, err, "open "+path+": no such file or directory")
	}
	_, err := File{}.Read(filepath.Join(path, "x.yaml"))
	require.EqualError(t, err, "open "+filepath.Join(path, "x.yaml")+": no such file or directory")
}
