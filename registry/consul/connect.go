package consul

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/meshfed/meshfed/internal/untrusted"
	"github.com/meshfed/meshfed/snapshot"
)

// Connect keeps Consul Connect's CA material for the gateways, as Consul's
// own proxies get it from their agent: the CA roots and Consul's trust
// domain (a blocking query on the agent's roots), and the leaf
// certificates of a set of Consul services (the imports' Consul names for
// the egress, Config.Connect.Identity for the ingress). A leaf is fetched
// from the agent, which signs and caches it, and fetched again halfway
// through its life, and soon after the roots changed until the new active
// root signed it; a few at a time, so that a thousand imports cost Consul
// a few connections. It also asks the agent whether Consul's intentions
// let a caller reach a service (Authorize).
type Connect struct {
	client   *api.Client
	conns    *http.Transport
	identity string
	log      *zap.Logger
	now      func() time.Time

	mu         sync.Mutex
	roots      *api.CARootList
	dc         string
	want       map[string]bool
	leaves     map[string]leaf
	intentions []*api.Intention
	callers    map[string]snapshot.ConsulCallers
	changed    chan struct{}
	wake       chan struct{}
	// rethink wakes the computing of the callers.
	rethink chan struct{}
	// stranger is a service no intention names: what Consul decides for
	// it is what it decides for every service no intention names.
	stranger string
}

type leaf struct {
	svid snapshot.SVID
	// index is the agent's, to block on; refresh is when to fetch it
	// again; current says the active root signed it.
	index   uint64
	refresh time.Time
	current bool
}

// Leaves are fetched this many at a time.
const leafWorkers = 4

// A query for a leaf blocks at most leafWait: a worker then goes on to
// the next leaf due. A leaf is renewed from leafRenewal of its life (the
// agent's own renewal, from 60% to 90% with jitter, happens only for a
// blocking query), and asked for no more often than leafMinRefresh while
// the active root signed it.
const (
	leafWait       = 10 * time.Second
	leafRenewal    = 0.9
	leafMinRefresh = 30 * time.Second
)

// connectConns bounds the connections to Consul: the two watches and the
// leaf workers hold theirs for a blocking query, the callers' workers and
// the connection checks (ext_authz) take one briefly. A check past the
// bound waits for one rather than opening more.
const connectConns = 2 + leafWorkers + leafWorkers + 2

// NewConnect returns the Connect material of cfg.Connect.
func NewConnect(cfg Config, log *zap.Logger) (*Connect, error) {
	if cfg.Connect == nil {
		return nil, errors.New("consul: connect is not configured")
	}
	client, conns, err := cfg.boundedClient(0, connectConns)
	if err != nil {
		return nil, err
	}
	return &Connect{client: client, conns: conns, identity: cfg.Connect.Identity, log: log, now: time.Now, dc: cfg.Datacenter,
		want: map[string]bool{cfg.Connect.Identity: true}, leaves: map[string]leaf{}, callers: map[string]snapshot.ConsulCallers{},
		changed: make(chan struct{}, 1), wake: make(chan struct{}, 1), rethink: make(chan struct{}, 1),
		stranger: "meshfed-stranger-" + strconv.FormatInt(time.Now().UnixNano(), 36)}, nil
}

// Changed receives a value when the material changed.
func (c *Connect) Changed() <-chan struct{} { return c.changed }

// SetServices makes names the Consul services whose leaves the egress
// holds (the identity's is always kept).
func (c *Connect) SetServices(names []string) {
	c.mu.Lock()
	want := map[string]bool{c.identity: true}
	for _, n := range names {
		want[n] = true
	}
	same := maps.Equal(want, c.want)
	c.want = want
	gone := false
	for n := range c.leaves {
		if !want[n] {
			delete(c.leaves, n)
			gone = true
		}
	}
	for n := range c.callers {
		if !want[n] {
			delete(c.callers, n)
			gone = true
		}
	}
	c.mu.Unlock()
	if gone {
		notify(c.changed)
	}
	if !same {
		notify(c.wake)
		notify(c.rethink)
	}
}

// Material is what the gateways get of Connect now.
func (c *Connect) Material() snapshot.ConsulSecrets {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out snapshot.ConsulSecrets
	if c.roots != nil {
		out.TrustDomain = c.roots.TrustDomain
		var pems []string
		for _, r := range c.roots.Roots {
			pems = append(pems, strings.TrimSpace(r.RootCertPEM)+"\n")
		}
		out.Roots = strings.Join(pems, "")
	}
	for name, l := range c.leaves {
		if name == c.identity {
			svid := l.svid
			out.Ingress = &svid
			continue
		}
		if out.Leaves == nil {
			out.Leaves = map[string]snapshot.SVID{}
		}
		out.Leaves[name] = l.svid
	}
	if len(c.callers) > 0 {
		out.Callers = maps.Clone(c.callers)
	}
	return out
}

// Datacenter asks the agent for its datacenter.
func (c *Connect) Datacenter(ctx context.Context) (string, error) {
	self, err := c.client.Agent().Self()
	if err != nil {
		return "", fmt.Errorf("consul: reading the agent's datacenter: %w", untrusted.Error(err))
	}
	dc, _ := self["Config"]["Datacenter"].(string)
	if dc == "" {
		return "", errors.New("consul: the agent named no datacenter")
	}
	return dc, ctx.Err()
}

// UseDatacenter sets the datacenter Consul names services in.
func (c *Connect) UseDatacenter(dc string) {
	c.mu.Lock()
	c.dc = dc
	c.mu.Unlock()
	notify(c.rethink)
}

// Authorize asks the agent whether Consul's intentions let the caller
// with the certificate of URI clientURI and serial reach service target.
func (c *Connect) Authorize(ctx context.Context, target, clientURI, serial string) (bool, string, error) {
	res, err := c.client.Agent().ConnectAuthorize(&api.AgentAuthorizeParams{Target: target, ClientCertURI: clientURI, ClientCertSerial: serial})
	if err != nil {
		return false, "", fmt.Errorf("consul: authorizing %s to %s: %w", untrusted.Quote(clientURI), target, untrusted.Error(err))
	}
	return res.Authorized, res.Reason, ctx.Err()
}

// Run follows the roots and keeps the leaves until ctx is done.
func (c *Connect) Run(ctx context.Context) error {
	defer c.conns.CloseIdleConnections()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		watchAll(ctx, c.log, "connect/ca/roots", func(q *api.QueryOptions) (*api.CARootList, *api.QueryMeta, error) {
			return c.client.Agent().ConnectCARoots(q)
		}, c.setRoots)
		return nil
	})
	g.Go(func() error {
		watchAll(ctx, c.log, "connect/intentions", func(q *api.QueryOptions) ([]*api.Intention, *api.QueryMeta, error) {
			return c.client.Connect().Intentions(q)
		}, c.setIntentions)
		return nil
	})
	g.Go(func() error { c.keepLeaves(ctx); return nil })
	g.Go(func() error { c.keepCallers(ctx); return nil })
	return g.Wait()
}

func (c *Connect) setIntentions(in []*api.Intention) {
	c.mu.Lock()
	c.intentions = in
	c.mu.Unlock()
	notify(c.rethink)
}

func (c *Connect) setRoots(roots *api.CARootList) {
	c.mu.Lock()
	old := c.roots
	c.roots = roots
	if old == nil || old.ActiveRootID != roots.ActiveRootID {
		// A new active root: every leaf is asked for again until it
		// signed it.
		for n, l := range c.leaves {
			l.refresh, l.current = c.now(), false
			c.leaves[n] = l
		}
	}
	c.mu.Unlock()
	c.log.Info("consul connect roots", zap.String("trust_domain", roots.TrustDomain), zap.String("active_root", roots.ActiveRootID), zap.Int("roots", len(roots.Roots)))
	notify(c.changed)
	notify(c.wake)
	notify(c.rethink)
}

// keepLeaves fetches the leaves that are missing or due, a few at a time,
// then sleeps until the next is due or the set changes.
func (c *Connect) keepLeaves(ctx context.Context) {
	failures := map[string]int{}
	for {
		due, next := c.due()
		if len(due) > 0 {
			var mu sync.Mutex
			var g errgroup.Group
			g.SetLimit(leafWorkers)
			changed := false
			for _, name := range due {
				g.Go(func() error {
					got, err := c.fetchLeaf(ctx, name)
					mu.Lock()
					defer mu.Unlock()
					changed = changed || got
					if err != nil {
						failures[name]++
						c.retryLeaf(name, failures[name])
						c.log.Warn("consul leaf certificate fetch failed; the last one stays", zap.String("service", name), zap.Error(err))
					} else {
						delete(failures, name)
					}
					return nil
				})
			}
			_ = g.Wait()
			if changed {
				notify(c.changed)
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// due lists the leaves to fetch now, and how long until the next is due.
func (c *Connect) due() ([]string, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	next := time.Hour
	var due []string
	for _, name := range slices.Sorted(maps.Keys(c.want)) {
		l, ok := c.leaves[name]
		if !ok || !l.refresh.After(now) {
			due = append(due, name)
			continue
		}
		next = min(next, l.refresh.Sub(now))
	}
	return due, next
}

func (c *Connect) retryLeaf(name string, failures int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.leaves[name]
	l.refresh = c.now().Add(min(time.Duration(failures)*time.Second, 30*time.Second))
	c.leaves[name] = l
}

// fetchLeaf asks the agent for the leaf of name; changed says whether it
// is another than the one held.
func (c *Connect) fetchLeaf(ctx context.Context, name string) (changed bool, err error) {
	c.mu.Lock()
	old, had := c.leaves[name]
	c.mu.Unlock()
	q := &api.QueryOptions{}
	if had {
		q.WaitIndex, q.WaitTime = old.index, leafWait
	}
	cert, meta, err := c.client.Agent().ConnectCALeaf(name, q.WithContext(ctx))
	if err != nil {
		return false, untrusted.Error(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.want[name] {
		return false, nil
	}
	l := leaf{svid: snapshot.SVID{CertChain: cert.CertPEM, PrivateKey: cert.PrivateKeyPEM}, index: meta.LastIndex}
	l.current = c.roots != nil && signedByActive(cert.CertPEM, c.roots)
	now := c.now()
	life := cert.ValidBefore.Sub(cert.ValidAfter)
	l.refresh = cert.ValidAfter.Add(time.Duration(float64(life) * leafRenewal))
	if l.refresh.Before(now.Add(leafMinRefresh)) {
		l.refresh = now.Add(leafMinRefresh)
	}
	if !l.current {
		// Blocking on it makes the agent sign a new one; the query paces
		// the asking.
		l.refresh = now
	}
	c.leaves[name] = l
	return !had || old.svid != l.svid, nil
}

// signedByActive says whether the active root of roots signed the leaf
// certificate in chainPEM.
func signedByActive(chainPEM string, roots *api.CARootList) bool {
	block, _ := pem.Decode([]byte(chainPEM))
	if block == nil {
		return false
	}
	leafCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	for _, r := range roots.Roots {
		if r.ID != roots.ActiveRootID {
			continue
		}
		rb, _ := pem.Decode([]byte(r.RootCertPEM))
		if rb == nil {
			return false
		}
		root, err := x509.ParseCertificate(rb.Bytes)
		if err != nil {
			return false
		}
		return leafCert.CheckSignatureFrom(root) == nil
	}
	return false
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// keepCallers works out, for every import's Consul name, which services
// Consul's intentions let call it, again whenever the intentions or the
// names change; what it cannot work out now is kept as it was and tried
// again soon.
func (c *Connect) keepCallers(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.rethink:
		case <-retry.C:
		}
		if err := c.computeCallers(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("consul: the callers of the imports could not be worked out; the last ones stay", zap.Error(err))
			retry.Reset(5 * time.Second)
		}
	}
}

// computeCallers asks the agent, for each name, what Consul decides for a
// service no intention names, and for each service an intention names
// that could concern it: those decided otherwise are its exceptions. The
// agent decides by precedence and by the ACLs' default, exactly.
func (c *Connect) computeCallers(ctx context.Context) error {
	c.mu.Lock()
	if c.roots == nil || c.dc == "" {
		c.mu.Unlock()
		return nil
	}
	td, dc := c.roots.TrustDomain, c.dc
	var names []string
	for n := range c.want {
		if n != c.identity {
			names = append(names, n)
		}
	}
	intentions := slices.Clone(c.intentions)
	c.mu.Unlock()
	id := func(svc string) string { return "spiffe://" + td + "/ns/default/dc/" + dc + "/svc/" + svc }
	out := make(map[string]snapshot.ConsulCallers, len(names))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(leafWorkers)
	for _, name := range names {
		g.Go(func() error {
			allow, _, err := c.Authorize(gctx, name, id(c.stranger), "")
			if err != nil {
				return err
			}
			cs := snapshot.ConsulCallers{Allow: allow}
			for _, src := range sources(intentions, name) {
				ok, _, err := c.Authorize(gctx, name, id(src), "")
				if err != nil {
					return err
				}
				if ok != allow {
					cs.Except = append(cs.Except, src)
				}
			}
			mu.Lock()
			out[name] = cs
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	c.mu.Lock()
	changed := false
	for name, cs := range out {
		old, had := c.callers[name]
		if c.want[name] && (!had || old.Allow != cs.Allow || !slices.Equal(old.Except, cs.Except)) {
			c.callers[name] = cs
			changed = true
		}
	}
	c.mu.Unlock()
	if changed {
		notify(c.changed)
	}
	return err
}

// sources are the services named as the source of an intention whose
// destination is name or every service, sorted.
func sources(intentions []*api.Intention, name string) []string {
	var out []string
	for _, in := range intentions {
		if in.SourceName != "*" && (in.DestinationName == name || in.DestinationName == "*") {
			out = append(out, in.SourceName)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// watchAll follows a blocking query, applying every answer that moved,
// and starts over from 0 when Consul's index went back (Consul lost its
// data) until ctx is done.
func watchAll[T any](ctx context.Context, log *zap.Logger, what string, fetch func(*api.QueryOptions) (T, *api.QueryMeta, error), apply func(T)) {
	failing := false
	q := func(opts *api.QueryOptions) (func(context.Context) error, *api.QueryMeta, error) {
		v, meta, err := fetch(opts)
		if err != nil {
			return nil, nil, err
		}
		return func(context.Context) error { apply(v); return nil }, meta, nil
	}
	report := func(err error) bool {
		fresh := err != nil && !failing
		failing = err != nil
		return fresh
	}
	for {
		err := follow(ctx, log, what, 0, minGap, q, report)
		if err == nil {
			return
		}
		log.Info("consul's index went back; the query starts over", zap.String("query", what), zap.Error(err))
	}
}
