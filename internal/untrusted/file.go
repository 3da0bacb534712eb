package untrusted

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultMaxFileBytes bounds a file read whole into memory unless its
// caller sets another bound: 16 MiB holds a registry file of some 80,000
// services, which takes about 560 MB to parse.
const DefaultMaxFileBytes = 16 << 20

// ErrTooLarge is a file over its bound; ErrNotRegular one that is not a
// regular file; ErrLinkLeaves one reached by a symbolic link out of its
// folder.
var (
	ErrTooLarge    = errors.New("over the size limit")
	ErrNotRegular  = errors.New("not a regular file")
	ErrLinkLeaves  = errors.New("a symbolic link out of the file's folder")
	errNonPositive = errors.New("untrusted: a file's size limit must be positive")
)

// File says how a file is read.
type File struct {
	// MaxBytes bounds its size; 0 is DefaultMaxFileBytes.
	MaxBytes int64
	// Limit names the setting MaxBytes comes from, for the message that
	// refuses a larger file (such as exports.maxFileBytes).
	Limit string
	// AnyLink lets a symbolic link lead anywhere: certificates and keys
	// are often links into a mounted secret elsewhere. Without it, every
	// link on the way must stay inside the file's folder (a Kubernetes
	// ConfigMap's name → ..data/name → ..2024_01_01/name does).
	AnyLink bool
}

// Read returns the content of the file at path, or an error that names the
// path and why, never what the file holds. The checks are made on the
// opened file, so that nothing swapped in between is read instead.
func (o File) Read(path string) ([]byte, error) {
	limit := o.MaxBytes
	if limit == 0 {
		limit = DefaultMaxFileBytes
	}
	if limit < 0 {
		return nil, errNonPositive
	}
	f, err := o.open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, %w", path, kind(fi.Mode()), ErrNotRegular)
	}
	if fi.Size() > limit {
		return nil, o.tooLarge(path, fmt.Sprintf("%d bytes", fi.Size()), limit)
	}
	// The size said is not trusted: the file may grow while it is read,
	// and some (in /proc) say 0.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, o.tooLarge(path, "more than that", limit)
	}
	return b, nil
}

func (o File) tooLarge(path, size string, limit int64) error {
	setting := ""
	if o.Limit != "" {
		setting = " (" + o.Limit + ")"
	}
	return fmt.Errorf("%s is %s, %w of %d bytes%s; it is not read", path, size, ErrTooLarge, limit, setting)
}

// open opens path for reading without blocking on a named pipe (O_NONBLOCK:
// opening one for reading would otherwise wait for a writer) and, unless
// AnyLink, inside its folder, which os.Root holds every link to.
func (o File) open(path string) (*os.File, error) {
	const flags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY
	if o.AnyLink {
		return os.OpenFile(path, flags, 0)
	}
	clean := filepath.Clean(path)
	dir, name := filepath.Dir(clean), filepath.Base(clean)
	if name == "/" || name == "." {
		return os.OpenFile(clean, flags, 0) // a folder, which Read refuses
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, samePath(err, path)
	}
	defer root.Close()
	f, err := root.OpenFile(name, flags, 0)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return f, samePath(err, path)
	}
	// os.Root's own error says "path escapes from parent"; say where to.
	if target, lerr := filepath.EvalSymlinks(path); lerr == nil {
		if realDir, derr := filepath.EvalSymlinks(dir); derr == nil && !inside(target, realDir) {
			return nil, fmt.Errorf("%s leads to %s, outside its folder %s: %w; a link may lead only within the folder (as a Kubernetes ConfigMap's ..data does), or link the folder itself", path, target, realDir, ErrLinkLeaves)
		}
	}
	return nil, samePath(err, path)
}

// samePath makes a *fs.PathError from os.Root say what os.Open would: open
// and the path as given, not openat and the name inside the folder.
func samePath(err error, path string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: "open", Path: path, Err: pe.Err}
	}
	return err
}

func inside(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// kind names what a file that is not regular is.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "of type " + m.Type().String()
}
