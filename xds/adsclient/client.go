// Package adsclient is an ADS client that behaves like an Envoy gateway
// toward meshfed: it subscribes to every type an Envoy gateway uses,
// decodes every resource, holds the resulting state and ACKs (or, when told
// to, NACKs). The benchmarks, the end-to-end tests and the demo use it where
// an Envoy binary is not available.
package adsclient

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Types are the types a gateway subscribes to, in the order Envoy asks for
// them. All are wildcard subscriptions: meshfed's gateways receive every
// resource of their role.
var Types = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.ScopedRouteType, resource.SecretType}

// Options configure a Client.
type Options struct {
	NodeID string
	// Delta selects incremental xDS; state of the world otherwise.
	Delta bool
	// Reject, when set, is asked about every response; a non-nil error
	// NACKs it with that message and the state is left as it was.
	Reject func(typeURL string, resources []*anypb.Any) error
	// InitialVersions are sent on a delta stream's first requests, as a
	// reconnecting Envoy does. When nil, a client that already holds
	// resources (Run called again) sends the versions it holds.
	InitialVersions map[string]map[string]string
	// OnUpdate, when set, is called with every update right after its ACK
	// (or NACK) was sent, on the goroutine running the stream and before the
	// next response is read: a slow callback holds the stream back.
	OnUpdate func(Update)
	// PartialSotw treats state-of-the-world responses of types other than
	// listeners and clusters as partial, as the xDS protocol allows: their
	// resources are merged into what is held, and none is removed, since a
	// wildcard subscription to those types has no way to say a resource is
	// gone (go-control-plane's LinearCache sends them so). By default every
	// state-of-the-world response is the whole state of its type, as
	// meshfed's cache and go-control-plane's SnapshotCache answer wildcard
	// subscriptions.
	PartialSotw bool
	// DigestsOnly holds a digest of each resource's bytes (see Digest)
	// instead of the resource, for fleets of many simulated gateways: State
	// then returns no resources. Update.Resources and Update.Decoded are
	// filled either way.
	DigestsOnly bool
}

// Update is one response the client applied (or rejected).
type Update struct {
	TypeURL string
	Version string
	Updated []string
	Removed []string
	// Resources are the resources of Updated, in the same order.
	Resources []*anypb.Any
	// Decoded are the same, unmarshaled.
	Decoded  []proto.Message
	Bytes    int
	Rejected error
	// Acked is when the ACK (or NACK) of the response was sent.
	Acked time.Time
}

// held is one resource the client holds.
type held struct {
	res     *anypb.Any // nil with DigestsOnly
	version string     // delta only
	digest  uint64
}

// Client is one simulated gateway.
type Client struct {
	opts Options

	mu      sync.Mutex
	state   map[string]map[string]held
	sotwVer map[string]string
	nacks   int
	bytes   int64
}

// New returns a client; Run connects it.
func New(opts Options) *Client {
	c := &Client{
		opts:    opts,
		state:   map[string]map[string]held{},
		sotwVer: map[string]string{},
	}
	for _, t := range Types {
		c.state[t] = map[string]held{}
	}
	return c
}

// Digest is the digest of a resource's serialized bytes that Digests
// reports: the first 8 bytes of their SHA-256, big endian.
func Digest(b []byte) uint64 {
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// Run opens an ADS stream on conn and follows it until ctx ends (nil) or
// the stream fails. Every update is passed to updates, when not nil; the
// client blocks until it is received.
//
// Run may be called again once it returned, as an Envoy reconnects: the
// new stream starts from the state held, announced by its versions
// (initial_resource_versions in delta, version_info in state of the world).
func (c *Client) Run(ctx context.Context, conn grpc.ClientConnInterface, updates chan<- Update) error {
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	var err error
	if c.opts.Delta {
		err = c.runDelta(ctx, ads, updates)
	} else {
		err = c.runSotw(ctx, ads, updates)
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *Client) node() *core.Node {
	return &core.Node{Id: c.opts.NodeID, Cluster: "meshfed-adsclient"}
}

func (c *Client) runSotw(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient, updates chan<- Update) error {
	st, err := ads.StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	recv := func() error { _, err := st.Recv(); return err }
	for _, t := range Types {
		if err := st.Send(&discovery.DiscoveryRequest{Node: c.node(), TypeUrl: t, VersionInfo: c.SotwVersion(t)}); err != nil {
			return sendErr(err, recv)
		}
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return streamErr(err)
		}
		u := c.applySotw(r)
		req := &discovery.DiscoveryRequest{Node: c.node(), TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce, VersionInfo: c.SotwVersion(r.TypeUrl)}
		if u.Rejected != nil {
			req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: u.Rejected.Error()}
		}
		if err := st.Send(req); err != nil {
			return sendErr(err, recv)
		}
		if !c.deliver(ctx, updates, u) {
			return nil
		}
	}
}

// fullState reports whether a state-of-the-world response of typeURL is the
// whole state of the type.
func (c *Client) fullState(typeURL string) bool {
	return !c.opts.PartialSotw || typeURL == resource.ListenerType || typeURL == resource.ClusterType
}

func (c *Client) applySotw(r *discovery.DiscoveryResponse) Update {
	u := Update{TypeURL: r.TypeUrl, Version: r.VersionInfo}
	for _, a := range r.Resources {
		u.Bytes += len(a.GetValue())
	}
	// Decoding, as Envoy does, happens outside the lock: State and Digests
	// callers do not wait for it.
	u.Rejected = c.decode(&u, r.TypeUrl, r.Resources)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes += int64(u.Bytes)
	if u.Rejected != nil {
		c.nacks++
		return u
	}
	full := c.fullState(r.TypeUrl)
	var next map[string]held
	if full {
		next = make(map[string]held, len(r.Resources))
	} else {
		next = c.state[r.TypeUrl]
		if next == nil {
			next = map[string]held{}
		}
	}
	for i, a := range u.Resources {
		next[u.Updated[i]] = c.hold(a, "")
	}
	if full {
		for name := range c.state[r.TypeUrl] {
			if _, ok := next[name]; !ok {
				u.Removed = append(u.Removed, name)
			}
		}
	}
	c.state[r.TypeUrl] = next
	c.sotwVer[r.TypeUrl] = r.VersionInfo
	return u
}

func (c *Client) hold(a *anypb.Any, version string) held {
	h := held{version: version, digest: Digest(a.GetValue())}
	if !c.opts.DigestsOnly {
		h.res = a
	}
	return h
}

// SotwVersion is the version_info of the last state-of-the-world response
// of typeURL the client accepted.
func (c *Client) SotwVersion(typeURL string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sotwVer[typeURL]
}

func (c *Client) runDelta(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient, updates chan<- Update) error {
	st, err := ads.DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	initial := c.opts.InitialVersions
	if initial == nil {
		initial = c.Versions()
	}
	recv := func() error { _, err := st.Recv(); return err }
	for _, t := range Types {
		req := &discovery.DeltaDiscoveryRequest{Node: c.node(), TypeUrl: t, ResourceNamesSubscribe: []string{"*"}}
		if iv := initial[t]; len(iv) > 0 {
			req.InitialResourceVersions = iv
		}
		if err := st.Send(req); err != nil {
			return sendErr(err, recv)
		}
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return streamErr(err)
		}
		u := c.applyDelta(r)
		req := &discovery.DeltaDiscoveryRequest{Node: c.node(), TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce}
		if u.Rejected != nil {
			req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: u.Rejected.Error()}
		}
		if err := st.Send(req); err != nil {
			return sendErr(err, recv)
		}
		if !c.deliver(ctx, updates, u) {
			return nil
		}
	}
}

func (c *Client) applyDelta(r *discovery.DeltaDiscoveryResponse) Update {
	u := Update{TypeURL: r.TypeUrl, Version: r.SystemVersionInfo, Removed: r.RemovedResources}
	anys := make([]*anypb.Any, len(r.Resources))
	for i, res := range r.Resources {
		anys[i] = res.GetResource()
		u.Bytes += len(res.GetResource().GetValue())
	}
	u.Rejected = c.decode(&u, r.TypeUrl, anys)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes += int64(u.Bytes)
	if u.Rejected != nil {
		c.nacks++
		return u
	}
	st := c.state[r.TypeUrl]
	if st == nil {
		st = map[string]held{}
		c.state[r.TypeUrl] = st
	}
	for i, res := range r.Resources {
		// The state is keyed by the name inside the resource, as Envoy
		// keys it; a server that names it otherwise is caught by the
		// decode check.
		st[u.Updated[i]] = c.hold(res.GetResource(), res.GetVersion())
	}
	for _, name := range r.RemovedResources {
		delete(st, name)
	}
	return u
}

// decode unmarshals every resource as Envoy would, fills the update's
// Updated, Resources and Decoded, and returns why the response is rejected,
// if it is.
func (c *Client) decode(u *Update, typeURL string, anys []*anypb.Any) error {
	if err := c.reject(typeURL, anys); err != nil {
		return err
	}
	u.Updated = make([]string, 0, len(anys))
	u.Decoded = make([]proto.Message, 0, len(anys))
	for _, a := range anys {
		if a.GetTypeUrl() != typeURL {
			u.Updated, u.Decoded = nil, nil
			return fmt.Errorf("a %s in a response of %s", a.GetTypeUrl(), typeURL)
		}
		m, name, err := decode(a)
		if err != nil {
			u.Updated, u.Decoded = nil, nil
			return err
		}
		u.Updated = append(u.Updated, name)
		u.Decoded = append(u.Decoded, m)
	}
	u.Resources = anys
	return nil
}

func (c *Client) reject(typeURL string, anys []*anypb.Any) error {
	if c.opts.Reject == nil {
		return nil
	}
	return c.opts.Reject(typeURL, anys)
}

// decode unmarshals a resource as Envoy would and returns it with its name.
func decode(a *anypb.Any) (proto.Message, string, error) {
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, "", fmt.Errorf("decoding %s: %w", a.GetTypeUrl(), err)
	}
	type named interface{ GetName() string }
	type cla interface{ GetClusterName() string }
	switch v := m.(type) {
	case cla:
		return m, v.GetClusterName(), nil
	case named:
		return m, v.GetName(), nil
	}
	return nil, "", fmt.Errorf("%s has no name", a.GetTypeUrl())
}

func (c *Client) deliver(ctx context.Context, updates chan<- Update, u Update) bool {
	u.Acked = time.Now()
	if c.opts.OnUpdate != nil {
		c.opts.OnUpdate(u)
	}
	if updates == nil {
		return true
	}
	select {
	case updates <- u:
		return true
	case <-ctx.Done():
		return false
	}
}

func streamErr(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("the server closed the ADS stream")
	}
	return err
}

// sendErr is why a Send failed: when the server ended the stream, its
// status, which only Recv tells.
func sendErr(err error, recv func() error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	for {
		if rerr := recv(); rerr != nil {
			return streamErr(rerr)
		}
	}
}

// State returns a copy of the resources held, by type and name; with
// DigestsOnly, every type is empty.
func (c *Client) State() map[string]map[string]*anypb.Any {
	return project(c, func(h held) (*anypb.Any, bool) { return h.res, h.res != nil })
}

// Versions returns the delta versions held, by type and name: what a
// reconnecting Envoy sends as initial_resource_versions. A state-of-the-world
// client holds none.
func (c *Client) Versions() map[string]map[string]string {
	return project(c, func(h held) (string, bool) { return h.version, h.version != "" })
}

// Digests returns the Digest of every resource held, by type and name.
func (c *Client) Digests() map[string]map[string]uint64 {
	return project(c, func(h held) (uint64, bool) { return h.digest, true })
}

// project copies what c holds, by type and name, through f: every type,
// and the resources f keeps.
func project[V any](c *Client, f func(held) (V, bool)) map[string]map[string]V {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]map[string]V, len(c.state))
	for t, m := range c.state {
		cp := make(map[string]V, len(m))
		for k, h := range m {
			if v, ok := f(h); ok {
				cp[k] = v
			}
		}
		out[t] = cp
	}
	return out
}

// Held reports whether the client holds the named resource, and its Digest.
func (c *Client) Held(typeURL, name string) (digest uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.state[typeURL][name]
	return h.digest, ok
}

// Len is the number of resources of a type held.
func (c *Client) Len(typeURL string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.state[typeURL])
}

// Nacks is the number of responses rejected.
func (c *Client) Nacks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nacks
}

// Bytes is the number of resource bytes received.
func (c *Client) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Delta reports whether the client speaks incremental xDS.
func (c *Client) Delta() bool { return c.opts.Delta }
