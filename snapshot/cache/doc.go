// Package cache is the hot path between translation and the xDS server: a
// resource-level, incremental implementation of go-control-plane's cache.Cache.
//
// Resources are held per gateway role (egress, ingress) and type URL, each
// marshaled once when it changes; the bytes, the anypb.Any and the delta
// discovery.Resource that wrap them are shared by every response to every
// gateway. A change is delivered by looking only at the changed names and the
// open watches of their type, so the work for one change does not grow with
// the catalog.
//
// Delta streams are kept incremental across requests without any per-stream
// table in the cache: the version map that the server keeps for each stream
// (Subscription.ReturnedResources) is updated in place while the cache owns the
// watch, and carries a marker with the sequence number the stream is synced to.
// The next watch of the stream then only looks at the changes after it.
package cache
