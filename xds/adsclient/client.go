// Package adsclient is an ADS client that behaves like an Envoy gateway
// toward meshfed: it subscribes to every type an Envoy gateway uses,
// decodes every resource, holds the resulting state and ACKs (or, when told
// to, NACKs). The benchmarks, the end-to-end tests and the demo use it where
// an Envoy binary is not available.
package adsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

// Types are the types a gateway subscribes to, in the order Envoy asks for
// them. All are wildcard subscriptions: meshfed's gateways receive every
// resource of their role.
var Types = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}

// Options configure a Client.
type Options struct {
	NodeID string
	// Delta selects incremental xDS; state of the world otherwise.
	Delta bool
	// Reject, when set, is asked about every response; a non-nil error
	// NACKs it with that message and the state is left as it was.
	Reject func(typeURL string, resources []*anypb.Any) error
	// InitialVersions are sent on a delta stream's first requests, as a
	// reconnecting Envoy does.
	InitialVersions map[string]map[string]string
}

// Update is one response the client applied (or rejected).
type Update struct {
	TypeURL string
	Version string
	Updated []string
	Removed []string
	// Resources are the resources of Updated, in the same order.
	Resources []*anypb.Any
	Bytes     int
	Rejected  error
}

// Client is one simulated gateway.
type Client struct {
	opts Options

	mu       sync.Mutex
	state    map[string]map[string]*anypb.Any
	versions map[string]map[string]string
	sotwVer  map[string]string
	nacks    int
	bytes    int64
}

// New returns a client; Run connects it.
func New(opts Options) *Client {
	c := &Client{
		opts:     opts,
		state:    map[string]map[string]*anypb.Any{},
		versions: map[string]map[string]string{},
		sotwVer:  map[string]string{},
	}
	for _, t := range Types {
		c.state[t] = map[string]*anypb.Any{}
		c.versions[t] = map[string]string{}
	}
	return c
}

// Run opens an ADS stream on conn and follows it until ctx ends (nil) or
// the stream fails. Every update is passed to updates, when not nil; the
// client blocks until it is received.
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
	for _, t := range Types {
		if err := st.Send(&discovery.DiscoveryRequest{Node: c.node(), TypeUrl: t}); err != nil {
			return err
		}
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return streamErr(err)
		}
		u := c.applySotw(r)
		req := &discovery.DiscoveryRequest{Node: c.node(), TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce, VersionInfo: c.sotwVersion(r.TypeUrl)}
		if u.Rejected != nil {
			req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: u.Rejected.Error()}
		}
		if err := st.Send(req); err != nil {
			return err
		}
		if !deliver(ctx, updates, u) {
			return nil
		}
	}
}

func (c *Client) applySotw(r *discovery.DiscoveryResponse) Update {
	u := Update{TypeURL: r.TypeUrl, Version: r.VersionInfo}
	for _, a := range r.Resources {
		u.Bytes += len(a.GetValue())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes += int64(u.Bytes)
	if u.Rejected = c.reject(r.TypeUrl, r.Resources); u.Rejected != nil {
		c.nacks++
		return u
	}
	next := make(map[string]*anypb.Any, len(r.Resources))
	for _, a := range r.Resources {
		name, err := decodeName(a)
		if err != nil {
			u.Rejected = err
			c.nacks++
			return u
		}
		next[name] = a
		u.Updated = append(u.Updated, name)
		u.Resources = append(u.Resources, a)
	}
	// Every subscription is a wildcard: the response is the whole state.
	for name := range c.state[r.TypeUrl] {
		if _, ok := next[name]; !ok {
			u.Removed = append(u.Removed, name)
		}
	}
	c.state[r.TypeUrl] = next
	c.sotwVer[r.TypeUrl] = r.VersionInfo
	return u
}

func (c *Client) sotwVersion(typeURL string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sotwVer[typeURL]
}

func (c *Client) runDelta(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient, updates chan<- Update) error {
	st, err := ads.DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for _, t := range Types {
		req := &discovery.DeltaDiscoveryRequest{Node: c.node(), TypeUrl: t, ResourceNamesSubscribe: []string{"*"}}
		if iv := c.opts.InitialVersions[t]; len(iv) > 0 {
			req.InitialResourceVersions = iv
		}
		if err := st.Send(req); err != nil {
			return err
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
			return err
		}
		if !deliver(ctx, updates, u) {
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
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes += int64(u.Bytes)
	if u.Rejected = c.reject(r.TypeUrl, anys); u.Rejected != nil {
		c.nacks++
		return u
	}
	for _, res := range r.Resources {
		if _, err := decodeName(res.GetResource()); err != nil {
			u.Rejected = err
			c.nacks++
			return u
		}
	}
	st, vs := c.state[r.TypeUrl], c.versions[r.TypeUrl]
	if st == nil {
		st, vs = map[string]*anypb.Any{}, map[string]string{}
		c.state[r.TypeUrl], c.versions[r.TypeUrl] = st, vs
	}
	for _, res := range r.Resources {
		st[res.Name], vs[res.Name] = res.Resource, res.Version
		u.Updated = append(u.Updated, res.Name)
		u.Resources = append(u.Resources, res.Resource)
	}
	for _, name := range r.RemovedResources {
		delete(st, name)
		delete(vs, name)
	}
	return u
}

func (c *Client) reject(typeURL string, anys []*anypb.Any) error {
	if c.opts.Reject == nil {
		return nil
	}
	return c.opts.Reject(typeURL, anys)
}

// decodeName unmarshals a resource as Envoy would and returns its name.
func decodeName(a *anypb.Any) (string, error) {
	m, err := a.UnmarshalNew()
	if err != nil {
		return "", fmt.Errorf("decoding %s: %w", a.GetTypeUrl(), err)
	}
	type named interface{ GetName() string }
	type cla interface{ GetClusterName() string }
	switch v := m.(type) {
	case cla:
		return v.GetClusterName(), nil
	case named:
		return v.GetName(), nil
	}
	return "", fmt.Errorf("%s has no name", a.GetTypeUrl())
}

func deliver(ctx context.Context, updates chan<- Update, u Update) bool {
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

// State returns a copy of the resources held, by type and name.
func (c *Client) State() map[string]map[string]*anypb.Any {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]map[string]*anypb.Any, len(c.state))
	for t, m := range c.state {
		cp := make(map[string]*anypb.Any, len(m))
		for k, v := range m {
			cp[k] = v
		}
		out[t] = cp
	}
	return out
}

// Versions returns the delta versions held, by type and name: what a
// reconnecting Envoy sends as initial_resource_versions.
func (c *Client) Versions() map[string]map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]map[string]string, len(c.versions))
	for t, m := range c.versions {
		cp := make(map[string]string, len(m))
		for k, v := range m {
			cp[k] = v
		}
		out[t] = cp
	}
	return out
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
