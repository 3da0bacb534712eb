package certs

import (
	"crypto/tls"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshfed/meshfed/internal/untrusted"
)

// ReadFile reads a certificate, key or bundle file: a regular file (not a
// pipe or a device, which would hang or never end) of at most
// untrusted.DefaultMaxFileBytes, through links that may lead anywhere (a
// mounted secret's ..data, a folder of cert-manager's). Its errors name
// the file, never what it holds; the parsers' errors after it do not
// either (they name what is wrong, not the bytes).
func ReadFile(path string) ([]byte, error) {
	return untrusted.File{AnyLink: true, Limit: "the bound of a certificate, key or bundle file"}.Read(path)
}

// loadSVID is x509svid.Load, reading the files with ReadFile.
func loadSVID(certFile, keyFile string) (*x509svid.SVID, error) {
	cert, err := ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	key, err := ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	return x509svid.Parse(cert, key)
}

// LoadX509Bundle is x509bundle.Load, reading the file with ReadFile.
func LoadX509Bundle(td spiffeid.TrustDomain, path string) (*x509bundle.Bundle, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("x509bundle: unable to load X.509 bundle file: %w", err)
	}
	return x509bundle.Parse(td, data)
}

// LoadKeyPair is tls.LoadX509KeyPair, reading the files with ReadFile.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(cert, key)
}
