package agent

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/meshfed/meshfed/dnsserver"
	"github.com/meshfed/meshfed/model"
	"github.com/meshfed/meshfed/registry"
	"github.com/meshfed/meshfed/snapshot"
)

// published keeps what this mesh's workloads see of the imports in step
// with what the gateways serve: their DNS names, the registries they are
// published in (sinks), the Consul names whose Connect leaves the egress
// holds. It takes the translator's result change by change and never
// reads the catalog, so that a change costs what it touches; a name is
// published only once the gateway serves it. It owns the sinks' loop and
// their status.
type published struct {
	log *zap.Logger
	// advertise is the egress address registries get; addrs is it as
	// IPs, for DNS, resolved once when it is a name (a container's).
	advertise string
	addrs     func() []netip.Addr
	dns       *dnsserver.Server
	sinks     []*sink
	// connect, when set, is told the Consul names of the imports served;
	// connectName is an import's, "" when it has none.
	connect     func(names []string)
	connectName func(model.Import) string

	mu     sync.Mutex
	served map[model.Key]servedImport
	// pending are the keys changed since the sinks last took them, with
	// the instances the sinks had of each then.
	pending map[model.Key][]registry.Imported
	names   map[string]int
	logged  int
	wake    chan struct{}
}

// servedImport is an import the gateways serve, and its instances as
// local workloads reach them.
type servedImport struct {
	imp       model.Import
	instances []registry.Imported
}

func newPublished(advertise string, log *zap.Logger) *published {
	p := &published{log: log, advertise: advertise, served: map[model.Key]servedImport{},
		pending: map[model.Key][]registry.Imported{}, names: map[string]int{}, logged: -1, wake: make(chan struct{}, 1)}
	p.addrs = sync.OnceValue(func() []netip.Addr {
		if ip, err := netip.ParseAddr(advertise); err == nil {
			return []netip.Addr{ip}
		}
		ips, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", advertise)
		if err != nil {
			log.Warn("cannot resolve gateways.egress.advertise for DNS answers", zap.String("advertise", advertise), zap.Error(err))
		}
		return ips
	})
	return p
}

// apply takes what changed of the imports the gateways serve: DNS and the
// Consul names follow at once, the sinks in their loop.
func (p *published) apply(changes []snapshot.ServedImport) {
	var set []dnsserver.Record
	var remove []string
	p.mu.Lock()
	namesBefore := len(p.names)
	namesChanged := false
	for _, c := range changes {
		old, had := p.served[c.Key]
		if _, ok := p.pending[c.Key]; !ok {
			p.pending[c.Key] = old.instances
		}
		if had {
			namesChanged = p.countName(old.imp, -1) || namesChanged
		}
		if c.Import == nil {
			delete(p.served, c.Key)
			if had {
				remove = append(remove, old.imp.LocalFQDN)
			}
			continue
		}
		now := servedImport{imp: *c.Import, instances: p.instancesOf(*c.Import, c.Ports)}
		p.served[c.Key] = now
		namesChanged = p.countName(now.imp, 1) || namesChanged
		if had && old.imp.LocalFQDN != now.imp.LocalFQDN {
			remove = append(remove, old.imp.LocalFQDN)
		}
		set = append(set, p.record(now))
	}
	var names []string
	if p.connect != nil && (namesChanged || len(p.names) != namesBefore) {
		names = make([]string, 0, len(p.names))
		for n := range p.names {
			names = append(names, n)
		}
	}
	p.mu.Unlock()
	if p.dns != nil && (len(set) > 0 || len(remove) > 0) {
		p.dns.Update(set, remove)
	}
	if names != nil {
		slices.Sort(names)
		p.connect(names)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// countName counts imp's Consul name in or out, and reports whether the
// set of names changed.
func (p *published) countName(imp model.Import, d int) bool {
	if p.connectName == nil {
		return false
	}
	n := p.connectName(imp)
	if n == "" {
		return false
	}
	p.names[n] += d
	switch p.names[n] {
	case 0:
		delete(p.names, n)
		return true
	case 1:
		return d > 0
	}
	return false
}

// instancesOf are imp's instances with the ports they are reached on; an
// instance without one (its range is full) is left out: there is nothing
// to dial.
func (p *published) instancesOf(imp model.Import, ports map[string]uint32) []registry.Imported {
	var out []registry.Imported
	for _, inst := range imp.Service.Instances {
		port, ok := ports[inst.ID]
		if !ok {
			continue
		}
		out = append(out, registry.Imported{
			Peer: imp.Peer, Name: imp.Service.Name, FQDN: imp.Service.FQDN, LocalFQDN: imp.LocalFQDN,
			Instance: inst.ID, Protocol: inst.Protocol, Address: p.advertise, Port: port,
		})
	}
	return out
}

// record is an import's DNS name, answering with the egress gateway's
// address and a port of each instance.
func (p *published) record(s servedImport) dnsserver.Record {
	r := dnsserver.Record{Name: s.imp.LocalFQDN, Addresses: p.addrs()}
	for _, in := range s.instances {
		r.SRV = append(r.SRV, dnsserver.SRV{Service: in.Instance, Proto: "tcp", Port: in.Port})
	}
	return r
}

// instances are the served instances of each import, by key.
func (p *published) instances() map[model.Key][]registry.Imported {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[model.Key][]registry.Imported, len(p.served))
	for k, s := range p.served {
		out[k] = s.instances
	}
	return out
}

// all is every served instance, in key order: what a Sync is given.
func (p *published) all() []registry.Imported {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(p.served), model.CompareKeys)
	var out []registry.Imported
	for _, k := range keys {
		out = append(out, p.served[k].instances...)
	}
	return out
}

// take hands over the changes since the last take: the instances set and
// those gone, as the sinks had them.
func (p *published) take() (set, gone []registry.Imported, served int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(p.pending), model.CompareKeys)
	for _, k := range keys {
		before, now := p.pending[k], p.served[k].instances
		set = append(set, now...)
		for _, b := range before {
			if !slices.ContainsFunc(now, func(n registry.Imported) bool {
				return n.Peer == b.Peer && n.Name == b.Name && n.Instance == b.Instance
			}) {
				gone = append(gone, b)
			}
		}
	}
	clear(p.pending)
	return set, gone, len(p.served)
}

// run keeps the sinks in step with the imports served until ctx ends: each
// change alone to a sink that takes changes (registry.ChangeSink), the
// whole set otherwise, at start, after a failure (retried with backoff)
// and every anti-entropy interval, which repairs what a registry lost.
// Bursts collapse into one update.
func (p *published) run(ctx context.Context) {
	retry := time.NewTimer(0)
	<-retry.C
	var resync <-chan time.Time
	if d := p.antiEntropy(); d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		resync = t.C
	}
	full := make([]bool, len(p.sinks))
	for i := range full {
		full[i] = true
	}
	backoff := time.Second
	for {
		set, gone, served := p.take()
		if served != p.logged {
			p.log.Info("imported services served", zap.Int("services", served))
			p.logged = served
		}
		failed := false
		for i, s := range p.sinks {
			cs, incremental := s.Sink.(registry.ChangeSink)
			var err error
			switch {
			case full[i] || !incremental:
				err = s.Sync(ctx, p.all())
			case len(set) > 0 || len(gone) > 0:
				err = cs.Apply(ctx, set, gone)
			default:
				continue
			}
			if ctx.Err() != nil {
				return
			}
			full[i] = err != nil
			wasHealthy := s.status().Healthy
			s.record(err, time.Now())
			switch {
			case err != nil:
				failed = true
				p.log.Warn("registry sink failed; retrying", zap.String("sink", s.name), zap.Error(err))
			case !wasHealthy:
				p.log.Info("registry sink synced", zap.String("sink", s.name))
			}
		}
		if failed {
			retry.Reset(backoff)
			backoff = min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			retry.Stop()
			return
		case <-p.wake:
			retry.Stop()
		case <-retry.C:
		case <-resync:
			retry.Stop()
			for i := range full {
				full[i] = true
			}
		}
	}
}

// antiEntropy is the shortest anti-entropy interval of the sinks; 0 when
// there is none.
func (p *published) antiEntropy() time.Duration {
	var d time.Duration
	for _, s := range p.sinks {
		if d == 0 || s.antiEntropy < d {
			d = s.antiEntropy
		}
	}
	return d
}

// status reports each sink, in the order configured.
func (p *published) status() []SinkStatus {
	out := make([]SinkStatus, 0, len(p.sinks))
	for _, s := range p.sinks {
		out = append(out, s.status())
	}
	return out
}
