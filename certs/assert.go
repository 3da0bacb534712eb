package certs

import (
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

var (
	_ SVIDSource          = (*FileSVIDSource)(nil)
	_ SVIDSource          = (*WorkloadSVIDSource)(nil)
	_ x509bundle.Source   = (*BundleSet)(nil)
	_ spiffebundle.Source = (*BundleSet)(nil)
)
