package cache

import (
	"context"

	gcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// Keyless is the cache as a client that is not authenticated may see it:
// every resource but the secrets that hold private keys, which do not
// exist for it. A plaintext xDS listener serves this view, so that no key
// leaves the agent to a client nobody vouched for.
func (c *Cache) Keyless() gcache.Cache { return keyless{c} }

type keyless struct{ c *Cache }

func (k keyless) CreateWatch(req *gcache.Request, sub gcache.Subscription, out chan gcache.Response) (func(), error) {
	return k.c.createWatch(req, sub, out, true)
}

func (k keyless) CreateDeltaWatch(req *gcache.DeltaRequest, sub gcache.Subscription, out chan gcache.DeltaResponse) (func(), error) {
	return k.c.createDeltaWatch(req, sub, out, true)
}

func (k keyless) Fetch(ctx context.Context, req *gcache.Request) (gcache.Response, error) {
	return k.c.Fetch(ctx, req)
}
