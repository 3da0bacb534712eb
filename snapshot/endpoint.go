package snapshot

import (
	"cmp"
	"net/netip"
	"slices"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/meshfed/meshfed/model"
)

// hostPort is an upstream address: an IP or a DNS name, and a port.
type hostPort struct {
	Host string
	Port uint32
}

// selectEndpoints is the endpoints serving an instance: those carrying at
// least one of the selector's labels; all of them when the selector is empty
// or matches no endpoint (Hamlet: "none matching means all"). The result is
// sorted and free of duplicates, so the order a peer lists its endpoints in
// does not change the resources.
func selectEndpoints(eps []model.Endpoint, selector []string) []hostPort {
	var out []hostPort
	if len(selector) > 0 {
		for _, e := range eps {
			if hasAny(e.Labels, selector) {
				out = append(out, hostPort{e.Address, e.Port})
			}
		}
	}
	if len(out) == 0 {
		for _, e := range eps {
			out = append(out, hostPort{e.Address, e.Port})
		}
	}
	return sortHostPorts(out)
}

func localEndpoints(eps []model.LocalEndpoint) []hostPort {
	out := make([]hostPort, 0, len(eps))
	for _, e := range eps {
		out = append(out, hostPort{e.Address, e.Port})
	}
	return sortHostPorts(out)
}

func sortHostPorts(hps []hostPort) []hostPort {
	slices.SortFunc(hps, func(a, b hostPort) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
	})
	return slices.Compact(hps)
}

func hasAny(labels, selector []string) bool {
	for _, l := range labels {
		if slices.Contains(selector, l) {
			return true
		}
	}
	return false
}

// anyHostname reports whether some address is a DNS name rather than an IP.
func anyHostname(hps []hostPort) bool {
	for _, hp := range hps {
		if _, err := netip.ParseAddr(hp.Host); err != nil {
			return true
		}
	}
	return false
}

// loadAssignment is the ClusterLoadAssignment of cluster name: one locality
// holding every address.
func loadAssignment(name string, hps []hostPort) *endpoint.ClusterLoadAssignment {
	lbs := make([]*endpoint.LbEndpoint, 0, len(hps))
	for _, hp := range hps {
		lbs = append(lbs, &endpoint.LbEndpoint{HostIdentifier: &endpoint.LbEndpoint_Endpoint{
			Endpoint: &endpoint.Endpoint{Address: socketAddress(hp.Host, hp.Port)},
		}})
	}
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	if len(lbs) > 0 {
		cla.Endpoints = []*endpoint.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return cla
}
