package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// File names written by InitDevCA and read by LoadCA and IssueSVID.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
	BundleFile = "bundle.pem"
)

const (
	certMode = 0o644
	keyMode  = 0o600
)

// DevCAOptions configures InitDevCA.
type DevCAOptions struct {
	Dir         string
	TrustDomain spiffeid.TrustDomain
	CATTL       time.Duration // zero means DefaultCATTL
	LeafTTL     time.Duration // zero means DefaultLeafTTL
	// Overwrite allows replacing an existing CA in Dir; without it InitDevCA
	// refuses, because every SVID and every peer's copy of the bundle would
	// silently stop verifying.
	Overwrite bool
}

// InitDevCA writes a development CA and the agent's and gateways' SVIDs
// into opts.Dir: ca.pem, ca-key.pem, bundle.pem, and <role>.pem with
// <role>-key.pem for agent, egress and ingress (SPIFFE IDs from RoleID).
// Keys are written 0600, certificates 0644, each by an atomic rename so a
// watcher never reads half a file.
func InitDevCA(opts DevCAOptions) error {
	if opts.Dir == "" {
		return errors.New("certs: InitDevCA needs a folder")
	}
	if !opts.Overwrite {
		for _, name := range []string{CACertFile, CAKeyFile} {
			p := filepath.Join(opts.Dir, name)
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("certs: %s already exists; refusing to replace a CA without Overwrite", p)
			}
		}
	}
	caTTL := opts.CATTL
	if caTTL <= 0 {
		caTTL = DefaultCATTL
	}
	ca, err := NewTestCA(opts.TrustDomain, func(o *certOptions) {
		now := time.Now()
		o.notBefore, o.notAfter = now.Add(-clockSkew), now.Add(caTTL)
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(opts.Dir, CAKeyFile), key, keyMode); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(opts.Dir, CACertFile), ca.CertPEM(), certMode); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(opts.Dir, BundleFile), ca.CertPEM(), certMode); err != nil {
		return err
	}
	for _, r := range Roles() {
		id, err := RoleID(opts.TrustDomain, r)
		if err != nil {
			return err
		}
		if err := ca.writeSVID(id, opts.LeafTTL, opts.Dir, string(r)); err != nil {
			return err
		}
	}
	return nil
}

// IssueSVID issues one more SVID from the CA in caDir and writes it to
// outDir as <name>.pem and <name>-key.pem.
func IssueSVID(caDir string, id spiffeid.ID, outDir, name string, opts ...CertOption) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") || name == "ca" || name == "bundle" {
		return fmt.Errorf("certs: SVID name %q must be a plain file name other than ca and bundle", name)
	}
	ca, err := LoadCA(caDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return ca.writeSVID(id, 0, outDir, name, opts...)
}

func (ca *CA) writeSVID(id spiffeid.ID, ttl time.Duration, dir, name string, opts ...CertOption) error {
	chain, key, err := ca.Issue(id, ttl, opts...)
	if err != nil {
		return err
	}
	// The key goes first: a watcher that sees the new certificate before
	// its key would reject the pair and keep the old SVID until both exist.
	if err := writeFileAtomic(filepath.Join(dir, name+"-key.pem"), key, keyMode); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, name+".pem"), chain, certMode)
}

// LoadCA reads ca.pem and ca-key.pem from dir. The trust domain is taken
// from the CA certificate's SPIFFE ID URI SAN.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	keyPEM, err := ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	certs, err := parsePEMCerts(certPEM)
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("certs: %s must hold exactly one certificate", certPath)
	}
	cert := certs[0]
	if !cert.IsCA || len(cert.URIs) != 1 {
		return nil, fmt.Errorf("certs: %s is not a SPIFFE CA certificate", certPath)
	}
	td, err := spiffeid.TrustDomainFromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", certPath, err)
	}
	key, err := parseECKey(keyPEM)
	if err != nil {
		// The parse error never echoes key bytes, but name only the file.
		return nil, fmt.Errorf("certs: %s does not hold an ECDSA private key", keyPath)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("certs: %s does not match %s", keyPath, certPath)
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

// writeFileAtomic writes through a temporary file in the same folder and a
// rename, with the mode set explicitly so the umask cannot loosen or
// tighten it.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(mode); err != nil {
		_ = f.Close()
		return fmt.Errorf("certs: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("certs: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}
