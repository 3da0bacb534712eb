// Command image builds meshfed's container image without a Docker engine:
// an empty base, and a layer each for the CA certificates, a nonroot user
// and the static meshfed binary, written as an OCI image layout in a tar
// archive that also holds Docker's manifest.json, so that `docker load`
// (old and new) and `podman load` both read it.
//
//	go run . -binary ../../bin/meshfed-linux-amd64 -arch amd64 -version v1.2.3 -revision abc -out meshfed.oci.tar
//
// It is a module of its own (as bench/plot is) so that meshfed's module
// does not gain go-containerregistry's dependencies.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things are in the image.
const (
	BinaryPath = "/usr/local/bin/meshfed"
	CACerts    = "/etc/ssl/certs/ca-certificates.crt"
	// UID and GID of the nonroot user: distroless's, which Kubernetes
	// manifests and volume permissions commonly expect.
	UID, GID = 65532, 65532
	// StateDir is the agent's store folder, owned by nonroot: a Docker
	// named volume mounted on it starts out with that owner.
	StateDir  = "/var/lib/meshfed"
	ConfigDir = "/etc/meshfed"
)

type options struct {
	binary, arch, version, revision, out, name, caCerts, source string
	created                                                     time.Time
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var o options
	fl := flag.NewFlagSet("image", flag.ContinueOnError)
	fl.StringVar(&o.binary, "binary", "", "the static meshfed binary (CGO_ENABLED=0)")
	fl.StringVar(&o.arch, "arch", "amd64", "the binary's architecture: amd64 or arm64")
	fl.StringVar(&o.version, "version", "", "the version, also the image's tag")
	fl.StringVar(&o.revision, "revision", "", "the VCS revision")
	fl.StringVar(&o.out, "out", "", "the archive to write")
	fl.StringVar(&o.name, "name", "meshfed", "the image's repository name in the archive")
	fl.StringVar(&o.caCerts, "ca-certs", CACerts, "the PEM bundle of CA certificates to put in the image")
	fl.StringVar(&o.source, "source", "", "the URL of the source, for the org.opencontainers.image.source label")
	epoch := fl.Int64("created", sourceDateEpoch(), "creation time in Unix seconds (default $SOURCE_DATE_EPOCH, else 0: the same inputs give the same image)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	o.created = time.Unix(*epoch, 0).UTC()
	if o.binary == "" || o.version == "" || o.revision == "" || o.out == "" {
		return errors.New("-binary, -version, -revision and -out are required")
	}
	if o.arch != "amd64" && o.arch != "arm64" {
		return fmt.Errorf("-arch %q: amd64 or arm64", o.arch)
	}
	img, err := image(o)
	if err != nil {
		return err
	}
	return writeArchive(o, img)
}

func sourceDateEpoch() int64 {
	n, _ := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	return n
}

// Tag is version made a valid image tag: [A-Za-z0-9_.-], at most 128.
func Tag(version string) string {
	t := regexp.MustCompile(`[^A-Za-z0-9_.-]`).ReplaceAllString(version, "-")
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

func image(o options) (v1.Image, error) {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(o.caCerts)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w (install Debian's ca-certificates, or give -ca-certs)", err)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
	layers := [][]entry{
		{dir("/etc", 0o755, 0), dir("/etc/ssl", 0o755, 0), dir("/etc/ssl/certs", 0o755, 0), file(CACerts, 0o644, 0, ca)},
		{
			dir("/etc", 0o755, 0), file("/etc/passwd", 0o644, 0, []byte(passwd)), file("/etc/group", 0o644, 0, []byte(group)),
			dir(ConfigDir, 0o755, 0), dir("/home", 0o755, 0), dir("/home/nonroot", 0o700, UID),
			dir("/tmp", 0o1777, 0), dir("/var", 0o755, 0), dir("/var/lib", 0o755, 0), dir(StateDir, 0o750, UID),
		},
		{dir("/usr", 0o755, 0), dir("/usr/local", 0o755, 0), dir("/usr/local/bin", 0o755, 0), file(BinaryPath, 0o755, 0, bin)},
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, entries := range layers {
		b, err := tarOf(entries, o.created)
		if err != nil {
			return nil, err
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: o.created}, CreatedBy: "meshfed deploy/image"}}); err != nil {
			return nil, err
		}
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "meshfed",
		"org.opencontainers.image.description": "Federates service meshes over Hamlet, and serves their Envoy gateways over xDS",
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
		"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
	}
	if o.source != "" {
		labels["org.opencontainers.image.source"] = o.source
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.arch, "linux", v1.Time{Time: o.created}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", UID, GID),
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"run", "--config", ConfigDir + "/meshfed.yaml"},
		WorkingDir: StateDir,
		Env:        []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=" + CACerts},
		Labels:     labels,
	}
	return mutate.ConfigFile(img, cf)
}

type entry struct {
	hdr  tar.Header
	data []byte
}

func dir(name string, mode int64, uid int) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name[1:] + "/", Mode: mode, Uid: uid, Gid: uid}}
}

func file(name string, mode int64, uid int, data []byte) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name[1:], Mode: mode, Uid: uid, Gid: uid, Size: int64(len(data))}, data: data}
}

// tarOf is a layer of entries, in order, with one modification time, so
// that the same inputs give the same digest.
func tarOf(entries []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	err := tw.Close()
	return buf.Bytes(), err
}

// writeArchive writes img as an OCI image layout, tagged, with Docker's
// manifest.json beside it, as one tar archive at o.out.
func writeArchive(o options, img v1.Image) error {
	dir, err := os.MkdirTemp("", "meshfed-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	tag := Tag(o.version)
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		// containerd (and Docker's containerd store) name the image by
		// the first, Podman and skopeo by the second.
		"io.containerd.image.name":          "docker.io/library/" + o.name + ":" + tag,
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		return err
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	m := struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{Config: blob(cfg), RepoTags: []string{o.name + ":" + tag}}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		m.Layers = append(m.Layers, blob(d))
	}
	mj, err := json.Marshal([]any{m})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), mj, 0o644); err != nil {
		return err
	}
	return tarDir(dir, o.out, o.created)
}

// tarDir archives the files under dir, sorted, into out (by a rename).
func tarDir(dir, out string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	var entries []entry
	for _, p := range names {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		entries = append(entries, file("/"+filepath.ToSlash(rel), 0o644, 0, b))
	}
	b, err := tarOf(entries, mtime)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
