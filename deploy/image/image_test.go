package main

import (
	"archive/tar"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The archive under test: the one `make image` wrote, named by
// $MESHFED_IMAGE (make test sets it, so meshfed is built once), else one
// this test builds the way make image does.
var (
	archiveOnce sync.Once
	archivePath string
	archiveErr  error
)

const (
	testVersion  = "v0.0.0-test"
	testRevision = "0123abc"
)

func buildArchive(t *testing.T) string {
	t.Helper()
	archiveOnce.Do(func() {
		if p := os.Getenv("MESHFED_IMAGE"); p != "" {
			archivePath = p
			return
		}
		dir, err := os.MkdirTemp("", "meshfed-image-test-")
		if err != nil {
			archiveErr = err
			return
		}
		archivePath, archiveErr = buildWith(dir)
	})
	if archiveErr != nil {
		t.Fatal(archiveErr)
	}
	return archivePath
}

// want is the version and revision the archive's binary was stamped with.
func want() (version, revision string) {
	if os.Getenv("MESHFED_IMAGE") != "" {
		return os.Getenv("MESHFED_IMAGE_VERSION"), os.Getenv("MESHFED_IMAGE_REVISION")
	}
	return testVersion, testRevision
}

func buildWith(dir string) (archive string, err error) {
	bin := filepath.Join(dir, "meshfed")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+testVersion+" -X main.revision="+testRevision, "-o", bin, "./cmd/meshfed")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/meshfed: %v\n%s", err, out)
	}
	archive = filepath.Join(dir, "meshfed.oci.tar")
	return archive, run([]string{"-binary", bin, "-arch", runtime.GOARCH, "-version", testVersion, "-revision", testRevision, "-out", archive})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if os.Getenv("MESHFED_IMAGE") == "" && archivePath != "" {
		os.RemoveAll(filepath.Dir(archivePath))
	}
	os.Exit(code)
}

// files are the regular files and headers of the image's flattened file
// system.
func files(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			if data[h.Name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	return hdrs, data
}

func TestImage(t *testing.T) {
	archive := buildArchive(t)

	// docker load reads manifest.json; go-containerregistry's tarball
	// package reads it as Docker's loader does.
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatalf("the archive as docker load reads it: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want the nonroot 65532:65532", cf.Config.User)
	}
	if strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/meshfed" {
		t.Errorf("entrypoint %q, want /usr/local/bin/meshfed", cf.Config.Entrypoint)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	ver, rev := want()
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  ver,
		"org.opencontainers.image.revision": rev,
		"org.opencontainers.image.title":    "meshfed",
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	ls, _ := img.Layers()
	if len(ls) != 3 {
		t.Errorf("%d layers, want 3: CA certificates, the nonroot user, the binary", len(ls))
	}

	hdrs, data := files(t, img)
	passwd := string(data["etc/passwd"])
	if !strings.Contains(passwd, "\nnonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", passwd)
	}
	if !strings.Contains(string(data["etc/ssl/certs/ca-certificates.crt"]), "-----BEGIN CERTIFICATE-----") {
		t.Error("no CA certificates at /etc/ssl/certs/ca-certificates.crt")
	}
	if h := hdrs["var/lib/meshfed"]; h == nil || h.Uid != 65532 || h.Typeflag != tar.TypeDir {
		t.Errorf("/var/lib/meshfed is not nonroot's: %+v", h)
	}
	bin := data["usr/local/bin/meshfed"]
	if h := hdrs["usr/local/bin/meshfed"]; h == nil || h.Mode&0o111 == 0 {
		t.Fatalf("no executable /usr/local/bin/meshfed: %+v", h)
	}

	// The image has no C library: the binary must be static.
	path := filepath.Join(t.TempDir(), "meshfed")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader; the image has none (build with CGO_ENABLED=0)")
		}
	}
	ef.Close()
	out, err := exec.Command(path, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("meshfed version: %v\n%s", err, out)
	}
	if string(out) != "meshfed "+ver+" (revision "+rev+")\n" {
		t.Errorf("meshfed version printed %q", out)
	}
}

// TestImageArchiveIsAnOCILayout: podman load, skopeo and Docker's
// containerd store read the OCI layout, tagged by its annotations.
func TestImageArchiveIsAnOCILayout(t *testing.T) {
	archive := buildArchive(t)
	dir := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var ol struct {
		Version string `json:"imageLayoutVersion"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil || json.Unmarshal(b, &ol) != nil || ol.Version != "1.0.0" {
		t.Fatalf("oci-layout: %s, %v", b, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("%d manifests in index.json", len(m.Manifests))
	}
	d := m.Manifests[0]
	ver, _ := want()
	if d.Annotations["org.opencontainers.image.ref.name"] != Tag(ver) || d.Annotations["io.containerd.image.name"] != "docker.io/library/meshfed:"+Tag(ver) {
		t.Errorf("annotations %v", d.Annotations)
	}
	if d.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("media type %s", d.MediaType)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.ConfigFile(); err != nil {
		t.Fatal(err)
	}
}

func TestTag(t *testing.T) {
	if got := Tag("v1.2.3+dirty/x"); got != "v1.2.3-dirty-x" {
		t.Errorf("Tag: %q", got)
	}
}

func TestRunErrors(t *testing.T) {
	for args, want := range map[string][]string{
		"-binary, -version, -revision and -out are required": {"-binary", "x"},
		`-arch "riscv64": amd64 or arm64`:                    {"-binary", "x", "-version", "v", "-revision", "r", "-out", "o", "-arch", "riscv64"},
	} {
		if err := run(want); err == nil || err.Error() != args {
			t.Errorf("run(%q) = %v, want %s", want, err, args)
		}
	}
}
