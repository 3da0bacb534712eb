package cache

import (
	"context"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// The responses are built whole when a watch is answered. Each is its own
// message because the server writes the nonce into it, but the resources in
// it are shared with every other response carrying the same version.

type sotwResponse struct {
	req      *discovery.DiscoveryRequest
	returned map[string]string
	resp     *discovery.DiscoveryResponse
}

var _ gcache.Response = (*sotwResponse)(nil)

func (r *sotwResponse) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	return r.resp, nil
}
func (r *sotwResponse) GetRequest() *discovery.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)             { return r.resp.GetVersionInfo(), nil }
func (r *sotwResponse) GetResponseVersion() string              { return r.resp.GetVersionInfo() }
func (r *sotwResponse) GetReturnedResources() map[string]string { return r.returned }
func (r *sotwResponse) GetContext() context.Context             { return context.Background() }

type deltaResponse struct {
	req   *discovery.DeltaDiscoveryRequest
	known map[string]string
	resp  *discovery.DeltaDiscoveryResponse
}

var _ gcache.DeltaResponse = (*deltaResponse)(nil)

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discovery.DeltaDiscoveryResponse, error) {
	return r.resp, nil
}
func (r *deltaResponse) GetDeltaRequest() *discovery.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error) {
	return r.resp.GetSystemVersionInfo(), nil
}
func (r *deltaResponse) GetResponseVersion() string              { return r.resp.GetSystemVersionInfo() }
func (r *deltaResponse) GetNextVersionMap() map[string]string    { return r.known }
func (r *deltaResponse) GetReturnedResources() map[string]string { return r.known }
func (r *deltaResponse) GetContext() context.Context             { return context.Background() }
