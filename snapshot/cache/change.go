package cache

import (
	"errors"
	"fmt"

	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Change sets or, with a nil Resource, deletes one resource.
type Change struct {
	TypeURL  string
	Name     string
	Resource proto.Message
}

// typePrefix is how every type URL in xDS starts.
const typePrefix = "type.googleapis.com/"

var marshalOptions = proto.MarshalOptions{Deterministic: true}

// prepared is a change ready to be committed: marshaled, versioned and
// wrapped, so that the lock is only held to swap pointers.
type prepared struct {
	typeURL string
	name    string
	res     *discovery.Resource // nil for a deletion
	// private is set for a secret that holds a private key.
	private bool
	// own is the content version of an assignment before it is linked to
	// its cluster's; eds the assignment an EDS cluster loads.
	own, eds string
}

// prepare validates and marshals changes outside the cache lock. A change that
// cannot be served is left out and reported, so the last good version of that
// resource stays; a later change to the same resource in the batch wins.
func (c *Cache) prepare(changes []Change) ([]prepared, error) {
	out := make([]prepared, 0, len(changes))
	index := make(map[resourceKey]int, len(changes))
	var errs []error
	for _, ch := range changes {
		p, err := c.prepareOne(ch)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k := resourceKey{p.typeURL, p.name}
		if i, ok := index[k]; ok {
			out[i] = p
			continue
		}
		index[k] = len(out)
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

type resourceKey struct{ typeURL, name string }

func (c *Cache) prepareOne(ch Change) (prepared, error) {
	if ch.Name == "" || ch.Name == syncKey {
		return prepared{}, fmt.Errorf("%s: invalid resource name %q", ch.TypeURL, ch.Name)
	}
	p := prepared{typeURL: ch.TypeURL, name: ch.Name}
	if ch.Resource == nil {
		return p, nil
	}
	if got := typePrefix + string(proto.MessageName(ch.Resource)); got != ch.TypeURL {
		return prepared{}, fmt.Errorf("%s %q: resource is a %s", ch.TypeURL, ch.Name, got)
	}
	b, err := marshalOptions.Marshal(ch.Resource)
	if err != nil {
		return prepared{}, fmt.Errorf("%s %q: %w", ch.TypeURL, ch.Name, err)
	}
	c.marshals.Add(1)
	p.private = holdsKey(ch.Resource)
	p.eds = edsName(ch.Resource)
	p.own = contentVersion(b)
	p.res = &discovery.Resource{
		Name:     ch.Name,
		Version:  p.own,
		Resource: &anypb.Any{TypeUrl: ch.TypeURL, Value: b},
	}
	return p, nil
}

// holdsKey reports whether m is a secret with a private key (an SVID): what
// a stream that is not authenticated must never receive.
func holdsKey(m proto.Message) bool {
	s, ok := m.(*tls.Secret)
	return ok && s.GetTlsCertificate().GetPrivateKey() != nil
}
