package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/meshfed/meshfed/hostname"
	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/model"
)

// PeerFile is one file of federation.peersDir, NAME.yaml: a peer that
// meshfed peer invite or join added, and its trust domain's bundle.
type PeerFile struct {
	Peer Peer `yaml:"peer"`
	// TrustBundle is the peer's trust domain's bundle source, relative
	// paths to the folder; the configuration must not have one too.
	TrustBundle *BundleSource `yaml:"trustBundle"`
}

// The names of a peer's files in federation.peersDir.
const (
	PeerFileSuffix   = ".yaml"
	BundleFileSuffix = ".bundle.pem"
)

// maxPeerFileBytes bounds a peer file: one peer takes a few hundred bytes.
const maxPeerFileBytes = 1 << 20

// PeerFilePath is the file of peer name in dir.
func PeerFilePath(dir, name string) string { return filepath.Join(dir, name+PeerFileSuffix) }

// BundleFilePath is the bundle file of peer name in dir.
func BundleFilePath(dir, name string) string { return filepath.Join(dir, name+BundleFileSuffix) }

// CheckPeerName refuses a name that cannot be a peer of federation.peersDir:
// it names its file, and the peer's names in logs and metrics, so it is
// one lower-case DNS label.
func CheckPeerName(name string) error {
	if why := hostname.Problem(name, hostname.Label); why != "" || strings.Contains(name, ".") {
		if why == "" {
			why = "it has a dot"
		}
		return fmt.Errorf("%s is not a peer name: one lower-case DNS label such as mesh-b (%s)", untrusted.Quote(name), why)
	}
	return nil
}

// loadedPeer is a peer file as read.
type loadedPeer struct {
	path string
	doc  *yaml.Node
	file PeerFile
}

// PeerFileNames lists the peers of dir (the NAME of each NAME.yaml), in
// name order; a missing folder has none.
func PeerFileNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("federation.peersDir: %w", err)
	}
	var out []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), PeerFileSuffix)
		if ok && !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, name)
		}
	}
	return out, nil
}

// readPeerFiles reads every peer file of dir, in name order, as
// strictly as the configuration: a file that is not one is an *Error
// naming it.
func readPeerFiles(dir string) ([]loadedPeer, error) {
	names, err := PeerFileNames(dir)
	if err != nil {
		return nil, err
	}
	var out []loadedPeer
	for _, name := range names {
		path := PeerFilePath(dir, name)
		lp, err := readPeerFile(path, name)
		if err != nil {
			return nil, err
		}
		out = append(out, lp)
	}
	return out, nil
}

func readPeerFile(path, name string) (loadedPeer, error) {
	fail := func(line int, field, format string, args ...any) error {
		return &Error{File: path, Problems: []Problem{{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}}}
	}
	b, err := untrusted.File{MaxBytes: maxPeerFileBytes, Limit: "the bound of a peer file (1 MiB)"}.Read(path)
	if err != nil {
		return loadedPeer{}, err
	}
	doc, err := untrusted.ParseYAML(b)
	if err != nil {
		p := syntaxProblem(err)
		return loadedPeer{}, fail(p.Line, "", "%s", p.Msg)
	}
	var f PeerFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			err = errors.New(te.Errors[0])
		}
		p := syntaxProblem(err)
		if m := unknownKeyRE.FindStringSubmatch(p.Msg); m != nil {
			p.Msg = fmt.Sprintf("a key of %d bytes is no field", len(m[1]))
			if untrusted.IsName(m[1]) {
				p.Msg = m[1] + ": unknown field"
				if near := closest(m[1], peerFileFields()); near != "" {
					p.Msg += "; did you mean " + near + "?"
				}
			}
		}
		return loadedPeer{}, fail(p.Line, "", "%s", p.Msg)
	}
	if err := CheckPeerName(f.Peer.Name); err != nil {
		return loadedPeer{}, fail(LineOf(doc, "peer.name"), "peer.name", "%v", err)
	}
	if f.Peer.Name != name {
		return loadedPeer{}, fail(LineOf(doc, "peer.name"), "peer.name", "%s is not the file's name %s: a peer's file is NAME%s", untrusted.Quote(f.Peer.Name), untrusted.Quote(name), PeerFileSuffix)
	}
	return loadedPeer{path: path, doc: doc, file: f}, nil
}

// addPeerFiles adds the peers of federation.peersDir and their bundles
// to c, which Parse has defaulted and checked, and checks the whole
// again. A problem in a peer file names that file, its line and field.
func (c *Config) addPeerFiles(path string) error {
	files, err := readPeerFiles(c.Federation.PeersDir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return nil
	}
	main := len(c.Peers)
	owner := map[string]int{} // trust domain -> index in files of its bundle
	c.TrustBundles = maps.Clone(c.TrustBundles)
	if c.TrustBundles == nil {
		c.TrustBundles = map[string]BundleSource{}
	}
	for i, lp := range files {
		p := lp.file.Peer
		fail := func(field, format string, args ...any) error {
			return &Error{File: lp.path, Problems: []Problem{{Line: LineOf(lp.doc, field), Field: field, Msg: fmt.Sprintf(format, args...)}}}
		}
		if j := slices.IndexFunc(c.Peers, func(q Peer) bool { return q.Name == p.Name }); j >= 0 && j < main {
			return fail("peer.name", "%s is also peers[%d] of %s; a peer is in one place", untrusted.Quote(p.Name), j, path)
		}
		if p.MaxServices == 0 {
			p.MaxServices = DefaultMaxServices
		}
		if b := lp.file.TrustBundle; b != nil {
			if _, ok := c.TrustBundles[p.TrustDomain]; ok {
				if j, fromFile := owner[p.TrustDomain]; fromFile {
					return fail("trustBundle", "the bundle of %s is in %s too", untrusted.Quote(p.TrustDomain), files[j].path)
				}
				return fail("trustBundle", "trustBundles.%s of %s is set too; a trust domain has one bundle", p.TrustDomain, path)
			}
			dir := filepath.Dir(lp.path)
			rel := func(s *string) {
				if *s != "" && !filepath.IsAbs(*s) {
					*s = filepath.Join(dir, *s)
				}
			}
			bs := *b
			rel(&bs.File)
			if e := bs.Endpoint; e != nil {
				ec := *e
				rel(&ec.BootstrapBundle)
				rel(&ec.CAFile)
				bs.Endpoint = &ec
			}
			c.TrustBundles[p.TrustDomain] = bs
			owner[p.TrustDomain] = i
		}
		c.Peers = append(c.Peers, p)
	}
	err = c.check()
	if err == nil {
		return nil
	}
	var fe *model.FieldError
	if !errors.As(err, &fe) {
		return &Error{File: path, Problems: []Problem{{Msg: err.Error()}}}
	}
	// The peer files were the change: a problem is most likely theirs.
	var idx int
	var rest string
	if n, _ := fmt.Sscanf(fe.Path, "peers[%d]", &idx); n == 1 && idx >= main {
		lp := files[idx-main]
		_, rest, _ = strings.Cut(fe.Path, "]")
		field := "peer" + rest
		return &Error{File: lp.path, Problems: []Problem{{Line: LineOf(lp.doc, field), Field: field, Msg: fe.Msg}}}
	}
	for td, i := range owner {
		if r, ok := strings.CutPrefix(fe.Path, "trustBundles."+td); ok {
			lp := files[i]
			field := "trustBundle" + r
			return &Error{File: lp.path, Problems: []Problem{{Line: LineOf(lp.doc, field), Field: field, Msg: fe.Msg}}}
		}
	}
	return &Error{File: path, Problems: []Problem{{Field: fe.Path, Msg: fe.Msg}}}
}

// The shape a peer file is written in: only what is set.
type (
	peerOut struct {
		Name          string   `yaml:"name"`
		TrustDomain   string   `yaml:"trustDomain"`
		SPIFFEIDs     []string `yaml:"spiffeIds,flow"`
		Callers       []string `yaml:"callers,omitempty,flow"`
		Dial          string   `yaml:"dial,omitempty"`
		AllowLoopback bool     `yaml:"allowLoopback,omitempty"`
	}
	endpointOut struct {
		URL             string `yaml:"url"`
		Profile         string `yaml:"profile"`
		SPIFFEID        string `yaml:"spiffeId,omitempty"`
		BootstrapBundle string `yaml:"bootstrapBundle,omitempty"`
		CAFile          string `yaml:"caFile,omitempty"`
	}
	bundleOut struct {
		File     string       `yaml:"file,omitempty"`
		Endpoint *endpointOut `yaml:"endpoint,omitempty"`
	}
	peerFileOut struct {
		Peer        peerOut    `yaml:"peer"`
		TrustBundle *bundleOut `yaml:"trustBundle,omitempty"`
	}
)

// WritePeerFile writes peer f into dir as NAME.yaml, after its bundle
// (NAME.bundle.pem) when bundlePEM is set, each replaced whole by a
// rename, so that a reader never sees half of one. Paths in f's bundle
// are taken relative to dir. header is the file's opening comment.
func WritePeerFile(dir string, f PeerFile, bundlePEM []byte, header string) error {
	if err := CheckPeerName(f.Peer.Name); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("federation.peersDir: %w", err)
	}
	if bundlePEM != nil {
		if err := writeFileAtomic(BundleFilePath(dir, f.Peer.Name), bundlePEM, 0o640); err != nil {
			return err
		}
	}
	p := f.Peer
	out := peerFileOut{Peer: peerOut{Name: p.Name, TrustDomain: p.TrustDomain, SPIFFEIDs: p.SPIFFEIDs, Callers: p.Callers, Dial: p.Dial, AllowLoopback: p.AllowLoopback}}
	if b := f.TrustBundle; b != nil {
		out.TrustBundle = &bundleOut{File: b.File}
		if e := b.Endpoint; e != nil {
			out.TrustBundle.Endpoint = &endpointOut{URL: e.URL, Profile: e.Profile, SPIFFEID: e.SPIFFEID, BootstrapBundle: e.BootstrapBundle, CAFile: e.CAFile}
		}
	}
	var buf bytes.Buffer
	for _, line := range strings.Split(strings.TrimSpace(header), "\n") {
		buf.WriteString("# " + line + "\n")
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	return writeFileAtomic(PeerFilePath(dir, p.Name), buf.Bytes(), 0o640)
}

// RemovePeerFile removes peer name's file and bundle from dir; it is an
// fs.ErrNotExist when dir has no such peer.
func RemovePeerFile(dir, name string) error {
	if err := CheckPeerName(name); err != nil {
		return err
	}
	if err := os.Remove(PeerFilePath(dir, name)); err != nil {
		return err
	}
	if err := os.Remove(BundleFilePath(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func writeFileAtomic(path string, b []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// peerFileFields are the names of every field a peer file may hold.
func peerFileFields() []string {
	var out []string
	for _, t := range []reflect.Type{reflect.TypeFor[PeerFile](), reflect.TypeFor[Peer](), reflect.TypeFor[BundleSource](), reflect.TypeFor[BundleFetching]()} {
		for i := range t.NumField() {
			if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" {
				out = append(out, name)
			}
		}
	}
	return out
}
