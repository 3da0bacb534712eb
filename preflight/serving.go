package preflight

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/meshfed/meshfed/admin"
	"github.com/meshfed/meshfed/config"
	"github.com/meshfed/meshfed/dnsserver"
	"github.com/meshfed/meshfed/registry/file"
	"github.com/meshfed/meshfed/store"
)

// listeners checks that each listener may bind where it is told, with the
// very checks the servers make, and that no two want the same port.
func (r *Report) listeners() {
	c := r.Config
	if err := admin.CheckListen(c.Admin.Listen, c.Admin.AllowNonLoopback); err != nil {
		r.addErr(Error, "admin.listen", err)
	}
	r.adminToken()
	if c.DNS.Listen != "" {
		if _, err := dnsserver.New(dnsserver.Config{Listen: c.DNS.Listen, AllowNonLoopback: c.DNS.AllowNonLoopback, Forward: c.DNS.Forward}); err != nil {
			r.addErr(Error, "dns.listen", err)
		}
	}
	r.distinct()
}

// adminToken checks the admin API's token file as the agent reads it,
// and warns of one that other users may read.
func (r *Report) adminToken() {
	path := r.Config.Admin.TokenFile
	if path == "" {
		return
	}
	if _, err := admin.ReadToken(path); err != nil {
		r.addErr(Error, "admin.tokenFile", err)
		return
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		r.add(Warning, "admin.tokenFile", "%s may be read by other users (mode %04o): chmod 600 it", path, info.Mode().Perm())
	}
}

// addErr records err, whose text may start with the field it is about
// ("dns.forward[1]: ..."): that field is used instead of field.
func (r *Report) addErr(sev Severity, field string, err error) {
	msg := err.Error()
	if f, rest, ok := strings.Cut(msg, ": "); ok && !strings.ContainsAny(f, " \"") {
		field, msg = f, rest
	}
	r.add(sev, field, "%s", msg)
}

// distinct refuses every pair of listeners on one port of one address,
// the gateways' included: the second bind would fail at start.
func (r *Report) distinct() {
	all := r.Config.Listeners()
	for i, a := range all {
		for _, b := range all[:i] {
			if a.Overlaps(b) {
				r.add(Error, a.Field, "%q takes the port of %s %q; each listener needs a port of its own", a, b.Field, b)
			}
		}
	}
}

// federation warns of a loopback ingress that peers will refuse.
func (r *Report) federation() {
	c := r.Config
	var strict []string
	for _, p := range c.Peers {
		if !p.AllowLoopback {
			strict = append(strict, p.Name)
		}
	}
	if len(strict) == 0 {
		return
	}
	for i, e := range c.Federation.Ingress {
		ip, err := netip.ParseAddr(e.Address)
		if (err != nil || !ip.Unmap().IsLoopback()) && e.Address != "localhost" {
			continue
		}
		r.add(Warning, fmt.Sprintf("federation.ingress[%d].address", i),
			"%s is loopback: a peer refuses exported services at a loopback address unless it sets allowLoopback for this mesh (only for a peer on this host), and peers %s here do not set allowLoopback, so they are not on this host; give the ingress gateway's address peers reach",
			e.Address, strings.Join(strict, ", "))
	}
}

// exports checks the registry file as the agent reads it, and that every
// consumer named is a configured peer: nothing is sent to one that is not.
func (r *Report) exports() {
	c := r.Config
	if path := c.Exports.File; path != "" {
		if exports, err := file.Read(path, c.Exports.MaxFileBytes); err != nil {
			r.add(Error, "exports.file", "%v", err)
		} else {
			for _, e := range exports {
				for _, consumer := range e.Consumers {
					if !r.isPeer(consumer) {
						r.add(Warning, "exports.file", "%s: service %s names consumer %q, which is not a configured peer (peers[].name): nothing is sent to it", path, e.Name, consumer)
					}
				}
			}
		}
	}
	if c.Consul == nil || c.Consul.Export == nil {
		return
	}
	for i, consumer := range c.Consul.Export.Consumers {
		if !r.isPeer(consumer) {
			r.add(Warning, fmt.Sprintf("consul.export.consumers[%d]", i), "%q is not a configured peer (peers[].name): nothing is sent to it", consumer)
		}
	}
}

func (r *Report) isPeer(name string) bool {
	return slices.ContainsFunc(r.Config.Peers, func(p config.Peer) bool { return p.Name == name })
}

// consul checks the files of the Consul block and that it does something.
// Consul itself is not asked: the check starts nothing and calls no one.
func (r *Report) consul() {
	c := r.Config.Consul
	if c == nil {
		return
	}
	if c.Export == nil && c.Import == nil {
		r.add(Warning, "consul", "neither export nor import is set, so Consul is not used; import: {} registers the imports with the defaults")
	}
	files := []struct{ field, path string }{{"consul.tokenFile", c.TokenFile}}
	if t := c.TLS; t != nil {
		files = append(files, struct{ field, path string }{"consul.tls.caFile", t.CAFile},
			struct{ field, path string }{"consul.tls.certFile", t.CertFile}, struct{ field, path string }{"consul.tls.keyFile", t.KeyFile})
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			r.add(Error, f.field, "%v", err)
		}
	}
}

// storeLockWait is how long the check waits for the store's lock: a
// running agent holds it for as long as it runs.
const storeLockWait = 200 * time.Millisecond

// store checks an existing store as the agent does before it opens it
// (store.Check): a damaged one stops the agent, and the message says the
// way out. A missing one is created at start; an empty one too, which is
// worth a warning, as a store that held imports never is.
func (r *Report) store() {
	path := r.Config.Store.Path
	sum, err := store.Check(path, store.WithTimeout(storeLockWait))
	var damaged *store.DamagedError
	switch {
	case errors.As(err, &damaged):
		r.add(Error, "store.path", "%s is damaged: %s; %s", path, damaged.Reason, store.WayOut)
	case errors.Is(err, store.ErrLocked):
		owner, known := storeOwner(path)
		switch {
		case known && owner.Config == canonical(r.path):
			// The running agent of this very configuration: what
			// meshfed reload after check expects.
		case known:
			r.add(Warning, "store.path", "%s is locked by the agent of %s (process %d); an agent started now would stop with this error unless that one ends first: two configurations cannot share a store", path, owner.Config, owner.PID)
		default:
			r.add(Warning, "store.path", "%s is locked by another process, most likely a running agent; an agent started now would stop with this error unless that process ends first", path)
		}
	case err != nil:
		r.add(Error, "store.path", "%v", err)
	case sum.Empty:
		r.add(Warning, "store.path", "%s is %s: the agent starts with a new, empty store; if it held imports, restore it from a backup", path, sum.Found())
	}
}
